/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * What a port provides to the runtime core (docs/CONTRACTS.md §3). Ports: ports/zephyr
 * (Zephyr UART interrupt API), ports/lm3s6965 (bare metal on QEMU lm3s6965evb),
 * ports/host (a PE as a Linux process).
 */
#ifndef PEMESH_PORT_H_
#define PEMESH_PORT_H_

#include <stddef.h>
#include <stdint.h>

/** Link 0 is the host link (UART0). */
#define PEMESH_LINK_HOST 0u
/** Link 1 is the mesh (NoC) link (UART1; under QEMU a socket to the fabric). */
#define PEMESH_LINK_MESH 1u

/**
 * @brief Bring up the links, the receive buffers and the cycle counter.
 * @retval 0 success
 * @retval -ENODEV the host link does not exist
 * @retval -EIO the hardware or OS refused
 */
int pemesh_port_init(void);

/**
 * @brief Write all @p len bytes to a link; blocks until they are handed to the hardware.
 * @retval 0 success
 * @retval -ENODEV no such link
 * @retval -EIO the link failed
 */
int pemesh_link_write(uint8_t link, const uint8_t *buf, size_t len);

/**
 * @brief Take up to @p max received bytes of a link without blocking.
 * @retval number of bytes copied to @p buf (0 when none are waiting or no such link)
 */
size_t pemesh_link_read(uint8_t link, uint8_t *buf, size_t max);

/**
 * @brief Wait for an event (a received byte, a timer); returns at once if bytes are
 * already waiting. May return spuriously.
 */
void pemesh_port_idle(void);

/**
 * @brief A monotonically rising cycle count (the unit is the port's: CPU cycles on
 * hardware, instructions under QEMU icount, nanoseconds on the host port).
 */
uint64_t pemesh_cycles(void);

/**
 * @brief How many pemesh_cycles() units make one second (of the emulated clock under QEMU).
 */
uint64_t pemesh_cycles_per_second(void);

#endif /* PEMESH_PORT_H_ */
