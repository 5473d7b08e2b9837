/*
 * SPDX-License-Identifier: Apache-2.0
 */
#include <errno.h>

#include <pemesh/ring.h>

int pemesh_ring_init(struct pemesh_ring *r, uint8_t *buf, uint32_t size)
{
	if (size == 0u || (size & (size - 1u)) != 0u) {
		return -EINVAL;
	}
	r->buf = buf;
	r->size = size;
	r->head = 0u;
	r->tail = 0u;
	return 0;
}

int pemesh_ring_put(struct pemesh_ring *r, uint8_t byte)
{
	uint32_t head = r->head;

	if (head - r->tail >= r->size) {
		return -ENOSPC;
	}
	r->buf[head & (r->size - 1u)] = byte;
	/* the byte must be stored before the consumer sees the new head */
	__asm__ volatile("" ::: "memory");
	r->head = head + 1u;
	return 0;
}

size_t pemesh_ring_get(struct pemesh_ring *r, uint8_t *out, size_t max)
{
	uint32_t tail = r->tail;
	uint32_t avail = r->head - tail;
	size_t n = 0;

	__asm__ volatile("" ::: "memory");
	while (n < max && n < avail) {
		out[n++] = r->buf[tail & (r->size - 1u)];
		tail++;
	}
	__asm__ volatile("" ::: "memory");
	r->tail = tail;
	return n;
}
