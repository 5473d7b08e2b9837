/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * Bare-metal start-up for the MPS2 AN386 (Cortex-M4F): vector table, reset handler (FPU on
 * before any C that may use it), default handlers. Linked with -nostartfiles, so C++ constructors (.init_array) are not run; the
 * pemesh runtime and TVM-generated C need none.
 */
#include <stdint.h>

extern uint32_t __stack_top;
extern uint32_t __data_start, __data_end, __data_load;
extern uint32_t __bss_start, __bss_end;

int main(void);

void Reset_Handler(void);
void pemesh_mps2_default_handler(void);

/* handlers the port implements (weak defaults here) */
void NMI_Handler(void) __attribute__((weak, alias("pemesh_mps2_default_handler")));
void HardFault_Handler(void) __attribute__((weak, alias("pemesh_mps2_default_handler")));
void MemManage_Handler(void) __attribute__((weak, alias("pemesh_mps2_default_handler")));
void BusFault_Handler(void) __attribute__((weak, alias("pemesh_mps2_default_handler")));
void UsageFault_Handler(void) __attribute__((weak, alias("pemesh_mps2_default_handler")));
void SVC_Handler(void) __attribute__((weak, alias("pemesh_mps2_default_handler")));
void DebugMon_Handler(void) __attribute__((weak, alias("pemesh_mps2_default_handler")));
void PendSV_Handler(void) __attribute__((weak, alias("pemesh_mps2_default_handler")));
void SysTick_Handler(void) __attribute__((weak, alias("pemesh_mps2_default_handler")));
void UART0_Handler(void) __attribute__((weak, alias("pemesh_mps2_default_handler")));
void UART1_Handler(void) __attribute__((weak, alias("pemesh_mps2_default_handler")));
void UART2_Handler(void) __attribute__((weak, alias("pemesh_mps2_default_handler")));

/** External interrupt lines in the table (AN386: 0..31 used); UART RX IRQs as in QEMU mps2.c. */
#define PEMESH_MPS2_N_IRQ 32
#define PEMESH_MPS2_IRQ_UART0 0
#define PEMESH_MPS2_IRQ_UART1 2
#define PEMESH_MPS2_IRQ_UART2 4

typedef void (*pemesh_vector_t)(void);

__attribute__((section(".vectors"), used))
const pemesh_vector_t pemesh_mps2_vectors[16 + PEMESH_MPS2_N_IRQ] = {
	[0] = (pemesh_vector_t)&__stack_top,
	[1] = Reset_Handler,
	[2] = NMI_Handler,
	[3] = HardFault_Handler,
	[4] = MemManage_Handler,
	[5] = BusFault_Handler,
	[6] = UsageFault_Handler,
	[7 ... 10] = pemesh_mps2_default_handler,
	[11] = SVC_Handler,
	[12] = DebugMon_Handler,
	[13] = pemesh_mps2_default_handler,
	[14] = PendSV_Handler,
	[15] = SysTick_Handler,
	[16 + PEMESH_MPS2_IRQ_UART0] = UART0_Handler,
	[16 + PEMESH_MPS2_IRQ_UART0 + 1] = pemesh_mps2_default_handler,
	[16 + PEMESH_MPS2_IRQ_UART1] = UART1_Handler,
	[16 + PEMESH_MPS2_IRQ_UART1 + 1 ... 16 + PEMESH_MPS2_IRQ_UART2 - 1] =
		pemesh_mps2_default_handler,
	[16 + PEMESH_MPS2_IRQ_UART2] = UART2_Handler,
	[16 + PEMESH_MPS2_IRQ_UART2 + 1 ... 16 + PEMESH_MPS2_N_IRQ - 1] =
		pemesh_mps2_default_handler,
};

#define SCB_CPACR (*(volatile uint32_t *)0xE000ED88u)

void Reset_Handler(void)
{
	uint32_t *src;
	uint32_t *dst;

	/* CP10/CP11 full access: the FPU, which -mfloat-abi=hard code uses */
	SCB_CPACR |= 0xFu << 20;
	__asm__ volatile("dsb\n\tisb" ::: "memory");
	src = &__data_load;
	dst = &__data_start;

	while (dst < &__data_end) {
		*dst++ = *src++;
	}
	for (dst = &__bss_start; dst < &__bss_end; dst++) {
		*dst = 0u;
	}
	(void)main();
	/* main returned (the port failed to start): sleep forever */
	for (;;) {
		__asm__ volatile("wfi");
	}
}

void pemesh_mps2_default_handler(void)
{
	/* an unexpected exception or interrupt: stop here (visible in a debugger as this PC) */
	for (;;) {
	}
}
