/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * A single-producer (interrupt) / single-consumer (main loop) byte ring used by the ports
 * for received bytes. Lock-free on a single core: the producer only writes `head`, the
 * consumer only writes `tail`; both are free-running 32-bit counters.
 */
#ifndef PEMESH_RING_H_
#define PEMESH_RING_H_

#include <stddef.h>
#include <stdint.h>

/** A byte ring over caller-owned storage (size a power of two). */
struct pemesh_ring {
	uint8_t *buf;           /**< storage, owned by the port */
	uint32_t size;          /**< bytes of storage (a power of two) */
	volatile uint32_t head; /**< bytes ever put (written by the producer) */
	volatile uint32_t tail; /**< bytes ever taken (written by the consumer) */
};

/**
 * @brief Set up a ring over @p buf.
 * @retval 0 success
 * @retval -EINVAL @p size is not a power of two
 */
int pemesh_ring_init(struct pemesh_ring *r, uint8_t *buf, uint32_t size);

/** @brief Bytes waiting. */
static inline uint32_t pemesh_ring_used(const struct pemesh_ring *r)
{
	return r->head - r->tail;
}

/** @brief Free bytes. */
static inline uint32_t pemesh_ring_space(const struct pemesh_ring *r)
{
	return r->size - (r->head - r->tail);
}

/**
 * @brief Producer: add one byte.
 * @retval 0 success
 * @retval -ENOSPC the ring is full (the byte was not added)
 */
int pemesh_ring_put(struct pemesh_ring *r, uint8_t byte);

/** @brief Consumer: take up to @p max bytes. @retval bytes copied */
size_t pemesh_ring_get(struct pemesh_ring *r, uint8_t *out, size_t max);

#endif /* PEMESH_RING_H_ */
