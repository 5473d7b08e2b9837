/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * The EEMBC host protocol on the entry PE of a mesh pipeline (docs/CONTRACTS.md §7): one
 * inference runs this PE's stage, then serves link 1 until the exit PEs' results (TENSOR
 * streams PEMESH_EEMBC_RESULT_STREAM | j) are in, then returns their READY credits. eembc.c
 * prints them. Compiled to nothing unless CONFIG_PEMESH_HOST_PROTOCOL_EEMBC.
 */
#include <pemesh/config.h>

#if PEMESH_HOST_EEMBC

#include <errno.h>
#include <string.h>

#include <pemesh/eembc.h>
#include <pemesh/frame.h>
#include <pemesh/model.h>
#include <pemesh/pe.h>
#include <pemesh/port.h>

#include "pe_internal.h"

static uint32_t pemesh_eembc_result_chunks(uint16_t o)
{
	uint32_t size = pemesh_eembc_model.results[o].size;
	uint32_t n = (size + PEMESH_MAX_PAYLOAD - 1u) / PEMESH_MAX_PAYLOAD;

	return n == 0u ? 1u : n;
}

void pemesh_eembc_result(struct pemesh_pe *pe, uint8_t link, const struct pemesh_frame *f)
{
	struct pemesh_eembc *e = &pe->eembc;
	const struct pemesh_eembc_model *em = &pemesh_eembc_model;
	uint16_t o = (uint16_t)(f->stream & ~PEMESH_EEMBC_RESULT_STREAM);
	uint32_t off = (uint32_t)f->chunk * PEMESH_MAX_PAYLOAD;

	if (em->results == NULL || o >= em->n_outputs || o >= PEMESH_MAX_TENSORS) {
		pemesh_pe_reject(pe, link, f, -EINVAL, "TENSOR result stream is not a model output");
	} else if (f->nchunks != pemesh_eembc_result_chunks(o) || f->chunk >= f->nchunks ||
		   (f->chunk != 0u && f->chunk != e->res_next[o]) ||
		   off + f->len > em->results[o].size ||
		   (f->chunk + 1u < f->nchunks && f->len != PEMESH_MAX_PAYLOAD)) {
		pemesh_pe_reject(pe, link, f, -EMSGSIZE, "TENSOR result chunk does not fit");
	} else {
		memcpy((uint8_t *)em->results[o].data + off, f->payload, f->len);
		e->res_next[o] = (uint16_t)(f->chunk + 1u);
		e->res_src[o] = f->src;
		e->res_done[o] = e->res_next[o] == f->nchunks ? 1u : 0u;
	}
	pemesh_pe_ack(pe, link, f);
}

void pemesh_eembc_local_result(struct pemesh_pe *pe, uint16_t index, uint16_t out)
{
	const struct pemesh_eembc_model *em = &pemesh_eembc_model;
	uint32_t size = pemesh_model.outputs[out].size;

	if (em->results == NULL || index >= em->n_outputs || index >= PEMESH_MAX_TENSORS ||
	    size != em->results[index].size) {
		return;
	}
	memcpy(em->results[index].data, pemesh_model.outputs[out].data, size);
	pe->eembc.res_src[index] = PEMESH_HOST_ID; /* no READY owed to anyone */
	pe->eembc.res_done[index] = 1u;
}

static int pemesh_eembc_results_done(const struct pemesh_eembc *e)
{
	for (uint16_t o = 0; o < pemesh_eembc_model.n_outputs; o++) {
		if (!e->res_done[o]) {
			return 0;
		}
	}
	return 1;
}

/* One inference through the mesh: run this stage, serve link 1 until every result is in,
 * then hand each exit PE its credit back (READY). 0, the stage's status, or -ETIMEDOUT. */
int32_t pemesh_eembc_run_mesh(struct pemesh_pe *pe)
{
	struct pemesh_eembc *e = &pe->eembc;
	uint8_t buf[64]; /* not pe->rx_chunk: it still holds the link-0 bytes being parsed */
	uint64_t limit = (uint64_t)PEMESH_EEMBC_MESH_TIMEOUT_S * pemesh_eembc_cycles_per_second();
	uint64_t t0 = pemesh_cycles();
	uint32_t runs = pe->inferences;

	for (uint16_t o = 0; o < PEMESH_MAX_TENSORS; o++) {
		e->res_next[o] = 0u;
		e->res_done[o] = 0u;
	}
	pe->run_status = 0;
	pemesh_pe_stage_start(pe);
	while (!pemesh_eembc_results_done(e)) {
		size_t n;

		if (pe->inferences == runs && pe->run_status != 0) {
			return pe->run_status;
		}
		if (pemesh_cycles() - t0 > limit) {
			return -ETIMEDOUT;
		}
		n = pemesh_link_read(PEMESH_LINK_MESH, buf, sizeof(buf));
		if (n > 0u) {
			pemesh_pe_feed_link(pe, PEMESH_LINK_MESH, buf, n);
		} else {
			pemesh_port_idle();
		}
	}
	for (uint16_t o = 0; o < pemesh_eembc_model.n_outputs; o++) {
		uint8_t ready[2];
		uint16_t stream = (uint16_t)(PEMESH_EEMBC_RESULT_STREAM | o);

		if (e->res_src[o] == PEMESH_HOST_ID) {
			continue;
		}
		pemesh_put_le16(ready, stream);
		pemesh_pe_send(pe, PEMESH_LINK_MESH, PEMESH_FRAME_READY, e->res_src[o], stream,
			       ready, sizeof(ready));
		pe->ready_sent++;
	}
	return 0;
}

#else /* !PEMESH_HOST_EEMBC */

/* ISO C wants a translation unit to declare something. */
typedef int pemesh_eembc_mesh_unused;

#endif /* PEMESH_HOST_EEMBC */
