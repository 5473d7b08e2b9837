/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * pemesh port for Zephyr: links 0..2 are the devicetree nodes uart0..uart2 (on
 * qemu_cortex_m3 the three Stellaris UARTs), driven with the interrupt-driven UART API
 * (CONFIG_UART_INTERRUPT_DRIVEN). uart0 is the host link, so the app's prj.conf must set
 * CONFIG_UART_CONSOLE=n (the console would otherwise write into the framed stream).
 *
 * RX: the UART callback moves bytes into a ring per link and gives a semaphore; when a ring
 * is full it disables the RX interrupt until the main loop drains the ring (the bytes wait
 * in the UART FIFO, QEMU back-pressures the chardev). TX: uart_poll_out().
 * Cycles: k_cycle_get_64() where the timer has a 64-bit counter, else k_cycle_get_32()
 * extended in software (correct while pemesh_cycles() runs at least once per 32-bit wrap).
 * Under QEMU with CONFIG_QEMU_ICOUNT these are instruction-driven virtual cycles.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>

#include <zephyr/device.h>
#include <zephyr/devicetree.h>
#include <zephyr/drivers/uart.h>
#include <zephyr/kernel.h>

#include <pemesh/config.h>
#include <pemesh/port.h>
#include <pemesh/ring.h>

struct pemesh_zlink {
	const struct device *dev;     /* NULL when the node is absent or disabled */
	volatile bool rx_masked;      /* set by the callback when the ring filled up */
	struct pemesh_ring ring;
	uint8_t storage[CONFIG_PEMESH_RX_BUFFER_SIZE];
};

#define PEMESH_UART_OR_NULL(label)                                                         \
	COND_CODE_1(DT_NODE_HAS_STATUS(DT_NODELABEL(label), okay),                         \
		    (DEVICE_DT_GET(DT_NODELABEL(label))), (NULL))

/** All state of this port. */
static struct {
	struct pemesh_zlink link[PEMESH_LINKS];
	struct k_sem rx_sem;
	uint32_t cyc_last;
	uint64_t cyc_high;
} pemesh_z;

static void pemesh_z_uart_cb(const struct device *dev, void *user_data)
{
	struct pemesh_zlink *l = user_data;

	while (uart_irq_update(dev) > 0 && uart_irq_rx_ready(dev) > 0) {
		uint8_t byte;

		if (pemesh_ring_space(&l->ring) == 0u) {
			uart_irq_rx_disable(dev);
			l->rx_masked = true;
			break;
		}
		if (uart_fifo_read(dev, &byte, 1) != 1) {
			break;
		}
		(void)pemesh_ring_put(&l->ring, byte);
	}
	k_sem_give(&pemesh_z.rx_sem);
}

int pemesh_port_init(void)
{
	const struct device *devs[3] = {
		PEMESH_UART_OR_NULL(uart0),
		PEMESH_UART_OR_NULL(uart1),
		PEMESH_UART_OR_NULL(uart2),
	};

	k_sem_init(&pemesh_z.rx_sem, 0, 1);
	for (uint8_t i = 0; i < PEMESH_LINKS; i++) {
		struct pemesh_zlink *l = &pemesh_z.link[i];
		int rc;

		l->dev = devs[i];
		l->rx_masked = false;
		rc = pemesh_ring_init(&l->ring, l->storage, sizeof(l->storage));
		if (rc != 0) {
			return rc;
		}
		if (l->dev == NULL || !device_is_ready(l->dev)) {
			l->dev = NULL;
			if (i == PEMESH_LINK_HOST) {
				return -ENODEV;
			}
			continue;
		}
		rc = uart_irq_callback_user_data_set(l->dev, pemesh_z_uart_cb, l);
		if (rc != 0) {
			return rc;
		}
		uart_irq_rx_enable(l->dev);
	}
	pemesh_z.cyc_last = k_cycle_get_32();
	pemesh_z.cyc_high = 0u;
	return 0;
}

int pemesh_link_write(uint8_t link, const uint8_t *buf, size_t len)
{
	if (link >= PEMESH_LINKS || pemesh_z.link[link].dev == NULL) {
		return -ENODEV;
	}
	for (size_t i = 0; i < len; i++) {
		uart_poll_out(pemesh_z.link[link].dev, buf[i]);
	}
	return 0;
}

size_t pemesh_link_read(uint8_t link, uint8_t *buf, size_t max)
{
	struct pemesh_zlink *l;
	size_t n;

	if (link >= PEMESH_LINKS || pemesh_z.link[link].dev == NULL) {
		return 0u;
	}
	l = &pemesh_z.link[link];
	n = pemesh_ring_get(&l->ring, buf, max);
	if (l->rx_masked && pemesh_ring_space(&l->ring) > 0u) {
		l->rx_masked = false;
		uart_irq_rx_enable(l->dev);
	}
	return n;
}

void pemesh_port_idle(void)
{
	for (uint8_t i = 0; i < PEMESH_LINKS; i++) {
		if (pemesh_ring_used(&pemesh_z.link[i].ring) > 0u) {
			return;
		}
	}
	/* the callback gives the semaphore after queueing bytes: a give that happens after the
	 * check above leaves the count at 1, so the take returns at once (no lost wake-up) */
	(void)k_sem_take(&pemesh_z.rx_sem, K_MSEC(100));
}

uint64_t pemesh_cycles(void)
{
#if defined(CONFIG_TIMER_HAS_64BIT_CYCLE_COUNTER)
	return k_cycle_get_64();
#else
	unsigned int key = irq_lock();
	uint32_t now = k_cycle_get_32();
	uint64_t result;

	if (now < pemesh_z.cyc_last) {
		pemesh_z.cyc_high += (uint64_t)1u << 32;
	}
	pemesh_z.cyc_last = now;
	result = pemesh_z.cyc_high | now;
	irq_unlock(key);
	return result;
#endif
}

uint64_t pemesh_cycles_per_second(void)
{
	return (uint64_t)sys_clock_hw_cycles_per_sec();
}
