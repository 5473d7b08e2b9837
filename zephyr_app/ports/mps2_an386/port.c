/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * pemesh port for the Arm MPS2 AN386 on bare metal (QEMU mps2-an386: a Cortex-M4 with FPU and
 * DSP, the machine behind Zephyr's mps2/an386 board): the Cortex-M4F PE kind.
 *
 * - Links 0..2 = CMSDK APB UART0..2 at 0x40004000/5000/6000 (RX IRQs 0, 2, 4; TX IRQs one
 *   higher, unused: TX is polled). The CMSDK UART holds one received byte; the RX interrupt
 *   moves it into a ring buffer per link. When a ring is full the RX interrupt is disabled
 *   until the main loop drains it, so the byte stays in the UART and QEMU stops reading the
 *   chardev (back-pressure instead of loss).
 * - Cycles: SysTick on the processor clock (25 MHz in QEMU's model), wraps counted in its
 *   interrupt and combined into 64 bits. Under -icount shift=6 one instruction is 64 virtual
 *   ns = 1.6 ticks (docs/M4F.md).
 * - Idle: WFI with interrupts masked around the check (no lost wake-ups).
 */
#include <errno.h>
#include <stdint.h>

#include <pemesh/config.h>
#include <pemesh/port.h>
#include <pemesh/ring.h>

#define PEMESH_REG(addr) (*(volatile uint32_t *)(uintptr_t)(addr))

/* CMSDK APB UART registers (offsets) and bits */
#define UART_DATA 0x000u
#define UART_STATE 0x004u
#define UART_CTRL 0x008u
#define UART_INTCLEAR 0x00Cu
#define UART_BAUDDIV 0x010u

#define UART_STATE_TXFULL (1u << 0)
#define UART_STATE_RXFULL (1u << 1)
#define UART_CTRL_TXEN (1u << 0)
#define UART_CTRL_RXEN (1u << 1)
#define UART_CTRL_RXINTEN (1u << 3)
#define UART_INT_RX (1u << 1)

/* Cortex-M4 system registers */
#define NVIC_ISER0 0xE000E100u
#define SCB_ICSR 0xE000ED04u
#define SCB_ICSR_PENDSTSET (1u << 26)
#define SYST_CSR 0xE000E010u
#define SYST_RVR 0xE000E014u
#define SYST_CVR 0xE000E018u
#define SYST_CSR_ENABLE_TICKINT_CLKSRC 0x7u
#define SYST_MAX 0x00FFFFFFu

struct pemesh_mps2_link {
	uint32_t base;              /* UART registers */
	uint8_t irq;                /* NVIC line */
	volatile uint8_t rx_masked; /* set by the ISR when the ring filled up */
	struct pemesh_ring ring;
};

/** All state of this port (the core's PE context is separate). */
static struct {
	struct pemesh_mps2_link link[PEMESH_LINKS];
	uint8_t rx_storage[PEMESH_LINKS][CONFIG_PEMESH_RX_BUFFER_SIZE];
	volatile uint32_t systick_wraps;
} pemesh_mps2;

static const uint32_t pemesh_mps2_uart_base[3] = {0x40004000u, 0x40005000u, 0x40006000u};
static const uint8_t pemesh_mps2_uart_irq[3] = {0u, 2u, 4u};

static inline uint32_t pemesh_irq_lock(void)
{
	uint32_t primask;

	__asm__ volatile("mrs %0, primask\n\tcpsid i" : "=r"(primask)::"memory");
	return primask;
}

static inline void pemesh_irq_unlock(uint32_t primask)
{
	__asm__ volatile("msr primask, %0" ::"r"(primask) : "memory");
}

static void pemesh_mps2_uart_isr(struct pemesh_mps2_link *l)
{
	uint32_t base = l->base;

	/* clear first: a byte that arrives while we read raises the interrupt again */
	PEMESH_REG(base + UART_INTCLEAR) = UART_INT_RX;
	while ((PEMESH_REG(base + UART_STATE) & UART_STATE_RXFULL) != 0u) {
		if (pemesh_ring_space(&l->ring) == 0u) {
			/* full: leave the byte in the UART, stop RX interrupts until drained */
			PEMESH_REG(base + UART_CTRL) &= ~UART_CTRL_RXINTEN;
			l->rx_masked = 1u;
			break;
		}
		(void)pemesh_ring_put(&l->ring, (uint8_t)PEMESH_REG(base + UART_DATA));
	}
}

void UART0_Handler(void)
{
	pemesh_mps2_uart_isr(&pemesh_mps2.link[0]);
}

#if PEMESH_LINKS > 1
void UART1_Handler(void)
{
	pemesh_mps2_uart_isr(&pemesh_mps2.link[1]);
}
#endif

#if PEMESH_LINKS > 2
void UART2_Handler(void)
{
	pemesh_mps2_uart_isr(&pemesh_mps2.link[2]);
}
#endif

void SysTick_Handler(void)
{
	pemesh_mps2.systick_wraps++;
}

static void pemesh_mps2_uart_init(struct pemesh_mps2_link *l)
{
	uint32_t base = l->base;

	PEMESH_REG(base + UART_CTRL) = 0u;
	/* 115200 baud from the 25 MHz peripheral clock (QEMU needs BAUDDIV >= 16) */
	PEMESH_REG(base + UART_BAUDDIV) = 217u;
	PEMESH_REG(base + UART_INTCLEAR) = 0xFu;
	PEMESH_REG(base + UART_CTRL) = UART_CTRL_TXEN | UART_CTRL_RXEN | UART_CTRL_RXINTEN;
	PEMESH_REG(NVIC_ISER0 + 4u * (l->irq / 32u)) = 1u << (l->irq % 32u);
}

int pemesh_port_init(void)
{
	for (uint8_t i = 0; i < PEMESH_LINKS; i++) {
		struct pemesh_mps2_link *l = &pemesh_mps2.link[i];
		int rc = pemesh_ring_init(&l->ring, pemesh_mps2.rx_storage[i],
					  CONFIG_PEMESH_RX_BUFFER_SIZE);

		if (rc != 0) {
			return rc;
		}
		l->base = pemesh_mps2_uart_base[i];
		l->irq = pemesh_mps2_uart_irq[i];
		l->rx_masked = 0u;
		pemesh_mps2_uart_init(l);
	}
	pemesh_mps2.systick_wraps = 0u;
	PEMESH_REG(SYST_RVR) = SYST_MAX;
	PEMESH_REG(SYST_CVR) = 0u;
	PEMESH_REG(SYST_CSR) = SYST_CSR_ENABLE_TICKINT_CLKSRC;
	__asm__ volatile("cpsie i" ::: "memory");
	return 0;
}

int pemesh_link_write(uint8_t link, const uint8_t *buf, size_t len)
{
	uint32_t base;

	if (link >= PEMESH_LINKS) {
		return -ENODEV;
	}
	base = pemesh_mps2.link[link].base;
	for (size_t i = 0; i < len; i++) {
		while ((PEMESH_REG(base + UART_STATE) & UART_STATE_TXFULL) != 0u) {
		}
		PEMESH_REG(base + UART_DATA) = buf[i];
	}
	return 0;
}

size_t pemesh_link_read(uint8_t link, uint8_t *buf, size_t max)
{
	struct pemesh_mps2_link *l;
	size_t n;

	if (link >= PEMESH_LINKS) {
		return 0u;
	}
	l = &pemesh_mps2.link[link];
	n = pemesh_ring_get(&l->ring, buf, max);
	if (l->rx_masked != 0u && pemesh_ring_space(&l->ring) > 0u) {
		/* drained: take the byte the UART holds, then RX interrupts again */
		uint32_t key = pemesh_irq_lock();

		l->rx_masked = 0u;
		pemesh_mps2_uart_isr(l);
		if (l->rx_masked == 0u) {
			PEMESH_REG(l->base + UART_CTRL) |= UART_CTRL_RXINTEN;
		}
		pemesh_irq_unlock(key);
	}
	return n;
}

void pemesh_port_idle(void)
{
	uint32_t key = pemesh_irq_lock();
	int waiting = 0;

	for (uint8_t i = 0; i < PEMESH_LINKS; i++) {
		if (pemesh_ring_used(&pemesh_mps2.link[i].ring) > 0u) {
			waiting = 1;
		}
	}
	if (!waiting) {
		/* a pending interrupt wakes WFI even with PRIMASK set; it runs after unlock */
		__asm__ volatile("dsb\n\twfi" ::: "memory");
	}
	pemesh_irq_unlock(key);
}

uint64_t pemesh_cycles(void)
{
	uint32_t key = pemesh_irq_lock();
	uint32_t wraps = pemesh_mps2.systick_wraps;
	uint32_t val = PEMESH_REG(SYST_CVR);

	if ((PEMESH_REG(SCB_ICSR) & SCB_ICSR_PENDSTSET) != 0u) {
		/* wrapped but not yet counted: re-read after the wrap */
		val = PEMESH_REG(SYST_CVR);
		wraps++;
	}
	pemesh_irq_unlock(key);
	return ((uint64_t)wraps << 24) + (uint64_t)(SYST_MAX - val);
}

uint64_t pemesh_cycles_per_second(void)
{
	/* SysTick on the processor clock: 25 MHz on QEMU's mps2-an386 (docs/M4F.md) */
	return 25000000u;
}
