/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * pemesh port for the TI Stellaris LM3S6965 on bare metal (QEMU lm3s6965evb, the machine
 * behind Zephyr's qemu_cortex_m3).
 *
 * - Links 0..2 = UART0..UART2 (PL011-like Stellaris UARTs at 0x4000C000/D000/E000, IRQs 5,
 *   6 and 33 as in QEMU hw/arm/stellaris.c). Received bytes go from the RX interrupt into a
 *   ring buffer per link; when a ring is full the RX interrupt is masked until the main loop
 *   drains it, so bytes stay in the UART FIFO and QEMU stops reading the chardev
 *   (back-pressure instead of loss). TX is polled.
 * - Cycles: SysTick on the processor clock (24-bit down counter), wraps counted in its
 *   interrupt and combined into 64 bits. Under QEMU -icount virtual time advances with
 *   executed instructions, so these "cycles" are instruction counts scaled by the icount
 *   shift; without -icount they follow host time.
 * - Idle: WFI with interrupts masked around the check, so a byte that arrives between the
 *   check and the WFI still wakes the core (no lost wake-ups).
 */
#include <errno.h>
#include <stdint.h>

#include <pemesh/config.h>
#include <pemesh/port.h>
#include <pemesh/ring.h>

#define PEMESH_REG(addr) (*(volatile uint32_t *)(uintptr_t)(addr))

/* Stellaris UART registers (offsets) */
#define UART_DR 0x000u
#define UART_FR 0x018u
#define UART_IBRD 0x024u
#define UART_FBRD 0x028u
#define UART_LCRH 0x02Cu
#define UART_CTL 0x030u
#define UART_IM 0x038u
#define UART_MIS 0x040u
#define UART_ICR 0x044u

#define UART_FR_RXFE (1u << 4)
#define UART_FR_TXFF (1u << 5)
#define UART_LCRH_FEN (1u << 4)
#define UART_LCRH_WLEN8 (3u << 5)
#define UART_CTL_EN ((1u << 0) | (1u << 8) | (1u << 9)) /* UARTEN | TXE | RXE */
#define UART_INT_RX (1u << 4)
#define UART_INT_RT (1u << 6)
#define UART_INT_RXALL (UART_INT_RX | UART_INT_RT)

/* System control: UART clock gating (RCGC1 bits 0..2) */
#define SYSCTL_RCGC1 0x400FE104u

/* Cortex-M3 system registers */
#define NVIC_ISER0 0xE000E100u
#define SCB_ICSR 0xE000ED04u
#define SCB_ICSR_PENDSTSET (1u << 26)
#define SYST_CSR 0xE000E010u
#define SYST_RVR 0xE000E014u
#define SYST_CVR 0xE000E018u
#define SYST_CSR_ENABLE_TICKINT_CLKSRC 0x7u
#define SYST_MAX 0x00FFFFFFu

struct pemesh_lm3s_link {
	uint32_t base;              /* UART registers */
	uint8_t irq;                /* NVIC line */
	volatile uint8_t rx_masked; /* set by the ISR when the ring filled up */
	struct pemesh_ring ring;
};

/** All state of this port (the core's PE context is separate). */
static struct {
	struct pemesh_lm3s_link link[PEMESH_LINKS];
	uint8_t rx_storage[PEMESH_LINKS][CONFIG_PEMESH_RX_BUFFER_SIZE];
	volatile uint32_t systick_wraps;
} pemesh_lm3s;

static const uint32_t pemesh_lm3s_uart_base[3] = {0x4000C000u, 0x4000D000u, 0x4000E000u};
static const uint8_t pemesh_lm3s_uart_irq[3] = {5u, 6u, 33u};

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

static void pemesh_lm3s_uart_isr(struct pemesh_lm3s_link *l)
{
	uint32_t base = l->base;

	PEMESH_REG(base + UART_ICR) = PEMESH_REG(base + UART_MIS);
	while ((PEMESH_REG(base + UART_FR) & UART_FR_RXFE) == 0u) {
		if (pemesh_ring_space(&l->ring) == 0u) {
			/* full: leave the bytes in the FIFO, stop RX interrupts until drained */
			PEMESH_REG(base + UART_IM) &= ~UART_INT_RXALL;
			l->rx_masked = 1u;
			break;
		}
		(void)pemesh_ring_put(&l->ring, (uint8_t)PEMESH_REG(base + UART_DR));
	}
}

void UART0_Handler(void)
{
	pemesh_lm3s_uart_isr(&pemesh_lm3s.link[0]);
}

#if PEMESH_LINKS > 1
void UART1_Handler(void)
{
	pemesh_lm3s_uart_isr(&pemesh_lm3s.link[1]);
}
#endif

#if PEMESH_LINKS > 2
void UART2_Handler(void)
{
	pemesh_lm3s_uart_isr(&pemesh_lm3s.link[2]);
}
#endif

void SysTick_Handler(void)
{
	pemesh_lm3s.systick_wraps++;
}

static void pemesh_lm3s_uart_init(struct pemesh_lm3s_link *l)
{
	uint32_t base = l->base;

	PEMESH_REG(base + UART_CTL) = 0u;
	/* 115200 baud from the 12 MHz system clock: 12e6 / (16 * 115200) = 6 + 33/64 */
	PEMESH_REG(base + UART_IBRD) = 6u;
	PEMESH_REG(base + UART_FBRD) = 33u;
	PEMESH_REG(base + UART_LCRH) = UART_LCRH_WLEN8 | UART_LCRH_FEN;
	PEMESH_REG(base + UART_ICR) = 0x7FFu;
	PEMESH_REG(base + UART_IM) = UART_INT_RXALL;
	PEMESH_REG(base + UART_CTL) = UART_CTL_EN;
	PEMESH_REG(NVIC_ISER0 + 4u * (l->irq / 32u)) = 1u << (l->irq % 32u);
}

int pemesh_port_init(void)
{
	PEMESH_REG(SYSCTL_RCGC1) |= (1u << PEMESH_LINKS) - 1u;
	for (uint8_t i = 0; i < PEMESH_LINKS; i++) {
		struct pemesh_lm3s_link *l = &pemesh_lm3s.link[i];
		int rc = pemesh_ring_init(&l->ring, pemesh_lm3s.rx_storage[i],
					  CONFIG_PEMESH_RX_BUFFER_SIZE);

		if (rc != 0) {
			return rc;
		}
		l->base = pemesh_lm3s_uart_base[i];
		l->irq = pemesh_lm3s_uart_irq[i];
		l->rx_masked = 0u;
		pemesh_lm3s_uart_init(l);
	}
	pemesh_lm3s.systick_wraps = 0u;
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
	base = pemesh_lm3s.link[link].base;
	for (size_t i = 0; i < len; i++) {
		while ((PEMESH_REG(base + UART_FR) & UART_FR_TXFF) != 0u) {
		}
		PEMESH_REG(base + UART_DR) = buf[i];
	}
	return 0;
}

size_t pemesh_link_read(uint8_t link, uint8_t *buf, size_t max)
{
	struct pemesh_lm3s_link *l;
	size_t n;

	if (link >= PEMESH_LINKS) {
		return 0u;
	}
	l = &pemesh_lm3s.link[link];
	n = pemesh_ring_get(&l->ring, buf, max);
	if (l->rx_masked != 0u && pemesh_ring_space(&l->ring) > 0u) {
		/* drained: take RX interrupts again (the ISR empties the FIFO at once) */
		uint32_t key = pemesh_irq_lock();

		l->rx_masked = 0u;
		PEMESH_REG(l->base + UART_IM) |= UART_INT_RXALL;
		pemesh_irq_unlock(key);
	}
	return n;
}

void pemesh_port_idle(void)
{
	uint32_t key = pemesh_irq_lock();
	int waiting = 0;

	for (uint8_t i = 0; i < PEMESH_LINKS; i++) {
		if (pemesh_ring_used(&pemesh_lm3s.link[i].ring) > 0u) {
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
	uint32_t wraps = pemesh_lm3s.systick_wraps;
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
	/* SysTick on the processor clock: 200 MHz / (SYSDIV 15 + 1) at reset under QEMU */
	return 12500000u;
}
