/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * Bare-metal start-up for the LM3S6965 (Cortex-M3): vector table, reset handler, default
 * handlers. Linked with -nostartfiles, so C++ constructors (.init_array) are not run; the
 * pemesh runtime and TVM-generated C need none.
 */
#include <stdint.h>

extern uint32_t __stack_top;
extern uint32_t __data_start, __data_end, __data_load;
extern uint32_t __bss_start, __bss_end;

int main(void);

void Reset_Handler(void);
void pemesh_lm3s_default_handler(void);

/* handlers the port implements (weak defaults here) */
void NMI_Handler(void) __attribute__((weak, alias("pemesh_lm3s_default_handler")));
void HardFault_Handler(void) __attribute__((weak, alias("pemesh_lm3s_default_handler")));
void MemManage_Handler(void) __attribute__((weak, alias("pemesh_lm3s_default_handler")));
void BusFault_Handler(void) __attribute__((weak, alias("pemesh_lm3s_default_handler")));
void UsageFault_Handler(void) __attribute__((weak, alias("pemesh_lm3s_default_handler")));
void SVC_Handler(void) __attribute__((weak, alias("pemesh_lm3s_default_handler")));
void DebugMon_Handler(void) __attribute__((weak, alias("pemesh_lm3s_default_handler")));
void PendSV_Handler(void) __attribute__((weak, alias("pemesh_lm3s_default_handler")));
void SysTick_Handler(void) __attribute__((weak, alias("pemesh_lm3s_default_handler")));
void UART0_Handler(void) __attribute__((weak, alias("pemesh_lm3s_default_handler")));
void UART1_Handler(void) __attribute__((weak, alias("pemesh_lm3s_default_handler")));
void UART2_Handler(void) __attribute__((weak, alias("pemesh_lm3s_default_handler")));

/** Number of external interrupt lines in the table (the LM3S6965 uses 0..43). */
#define PEMESH_LM3S_N_IRQ 48
#define PEMESH_LM3S_IRQ_UART0 5
#define PEMESH_LM3S_IRQ_UART1 6
#define PEMESH_LM3S_IRQ_UART2 33

typedef void (*pemesh_vector_t)(void);

__attribute__((section(".vectors"), used))
const pemesh_vector_t pemesh_lm3s_vectors[16 + PEMESH_LM3S_N_IRQ] = {
	[0] = (pemesh_vector_t)&__stack_top,
	[1] = Reset_Handler,
	[2] = NMI_Handler,
	[3] = HardFault_Handler,
	[4] = MemManage_Handler,
	[5] = BusFault_Handler,
	[6] = UsageFault_Handler,
	[7 ... 10] = pemesh_lm3s_default_handler,
	[11] = SVC_Handler,
	[12] = DebugMon_Handler,
	[13] = pemesh_lm3s_default_handler,
	[14] = PendSV_Handler,
	[15] = SysTick_Handler,
	[16 ... 16 + PEMESH_LM3S_IRQ_UART0 - 1] = pemesh_lm3s_default_handler,
	[16 + PEMESH_LM3S_IRQ_UART0] = UART0_Handler,
	[16 + PEMESH_LM3S_IRQ_UART1] = UART1_Handler,
	[16 + PEMESH_LM3S_IRQ_UART1 + 1 ... 16 + PEMESH_LM3S_IRQ_UART2 - 1] =
		pemesh_lm3s_default_handler,
	[16 + PEMESH_LM3S_IRQ_UART2] = UART2_Handler,
	[16 + PEMESH_LM3S_IRQ_UART2 + 1 ... 16 + PEMESH_LM3S_N_IRQ - 1] =
		pemesh_lm3s_default_handler,
};

void Reset_Handler(void)
{
	uint32_t *src = &__data_load;
	uint32_t *dst = &__data_start;

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

void pemesh_lm3s_default_handler(void)
{
	/* an unexpected exception or interrupt: stop here (visible in a debugger as this PC) */
	for (;;) {
	}
}
