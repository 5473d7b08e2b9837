/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * Role STAGE of the PE main loop: a pipeline stage of a mesh (docs/CONTRACTS.md §6). TENSOR
 * frames are accepted from each source only in seq order; an output goes out by its OUTPUT
 * routes when the route holds a READY credit; after every run a READY goes back to each
 * input's source. READY carries (u16 stream, u16 count): the consumer has consumed `count`
 * tensors of that input and waits for the next, so a producer that has sent `count` tensors on
 * the route takes it as its one credit and ignores any other (a stale or repeated READY). An
 * input still empty a READY period after its READY sends it again (pemesh_pe_tick): a lost
 * READY heals. Frames to the host leave on link 0, frames to PEs on link 1. All state is in
 * struct pemesh_pe (pe.c owns the one instance).
 */
#include <errno.h>
#include <stddef.h>

#include <pemesh/config.h>
#include <pemesh/frame.h>
#include <pemesh/model.h>
#include <pemesh/pe.h>
#include <pemesh/port.h>

#include "pe_internal.h"

/* The link a STAGE PE's frame for dst leaves on: the host → link 0, a PE → link 1. */
static uint8_t pemesh_pe_stage_link(uint16_t dst)
{
	return dst != PEMESH_HOST_ID ? PEMESH_LINK_MESH : PEMESH_LINK_HOST;
}

/* The sequence state kept for a peer; created on first use when `create` (NULL when full). */
static struct pemesh_pe_peer *pemesh_pe_peer(struct pemesh_pe *pe, uint16_t id, int create)
{
	struct pemesh_pe_peer *free_slot = NULL;

	for (uint16_t i = 0; i < PEMESH_MAX_PEERS; i++) {
		struct pemesh_pe_peer *p = &pe->peers[i];

		if (p->used != 0u && p->id == id) {
			return p;
		}
		if (p->used == 0u && free_slot == NULL) {
			free_slot = p;
		}
	}
	if (create && free_slot != NULL) {
		free_slot->used = 1u;
		free_slot->id = id;
		free_slot->rx_expect = 0u;
		free_slot->tx_seq = 0u;
		return free_slot;
	}
	return NULL;
}

int pemesh_pe_stage_init(struct pemesh_pe *pe, const volatile struct pemesh_pe_config *cfg)
{
	pe->n_routes = cfg->n_routes;
	for (uint8_t i = 0; i < pe->n_routes; i++) {
		struct pemesh_pe_route *rt = &pe->routes[i];

		(void)pemesh_config_route(cfg, i, &rt->r);
		if ((rt->r.kind == PEMESH_ROUTE_OUTPUT && rt->r.a >= pemesh_model.n_outputs) ||
		    (rt->r.kind == PEMESH_ROUTE_SOURCE && rt->r.a >= pemesh_model.n_inputs)) {
			pe->init_error = "a route names a tensor the model does not have";
			return -EINVAL;
		}
		rt->credits = 1u;
		rt->pending = 0u;
		rt->count = 0u;
		rt->ready_at = pemesh_cycles(); /* producers start with the credit for tensor 0 */
		rt->ready_backoff = 0u;
		(void)pemesh_pe_peer(pe, rt->r.pe, 1);
	}
	(void)pemesh_pe_peer(pe, PEMESH_HOST_ID, 1);
	pe->ready_period = pemesh_cycles_per_second() * PEMESH_READY_PERIOD_MS / 1000u;
	return 0;
}

/** Most doublings of the READY resend period while an input stays empty (2^5 x the base). */
#define PEMESH_READY_MAX_BACKOFF 5u

/* Role STAGE: READY for the SOURCE route @p rt: "I consumed rt->count tensors of input a". */
static void pemesh_pe_send_ready(struct pemesh_pe *pe, struct pemesh_pe_route *rt)
{
	uint8_t ready[4];

	pemesh_put_le16(ready, rt->r.a);
	pemesh_put_le16(&ready[2], rt->count);
	pemesh_pe_send(pe, pemesh_pe_stage_link(rt->r.pe), PEMESH_FRAME_READY, rt->r.pe, rt->r.a,
		       ready, sizeof(ready));
	rt->ready_at = pemesh_cycles();
}

void pemesh_pe_expire(struct pemesh_pe *pe, uint8_t link, uint64_t now)
{
	if (link < PEMESH_PE_RX_LINKS && pe->byte_timeout != 0u &&
	    pemesh_decoder_pending(&pe->rx[link]) != 0u && now - pe->rx_at[link] >= pe->byte_timeout) {
		(void)pemesh_decoder_abandon(&pe->rx[link]);
	}
}

void pemesh_pe_tick(struct pemesh_pe *pe, uint64_t now)
{
	if (pe->role != PEMESH_ROLE_STAGE || pe->init_status != 0 || pe->ready_period == 0u) {
		return;
	}
	for (uint8_t i = 0; i < pe->n_routes; i++) {
		struct pemesh_pe_route *rt = &pe->routes[i];

		/* only across the mesh: the host link loses nothing, and nothing is written to it
		 * unasked (a board's USB serial or an unopened pty may not take it) */
		if (rt->r.kind != PEMESH_ROUTE_SOURCE || rt->r.pe == PEMESH_HOST_ID ||
		    pe->in[rt->r.a].next_chunk != 0u ||
		    now - rt->ready_at < (pe->ready_period << rt->ready_backoff)) {
			continue;
		}
		pemesh_pe_send_ready(pe, rt);
		pe->ready_resent++;
		if (rt->ready_backoff < PEMESH_READY_MAX_BACKOFF) {
			rt->ready_backoff++; /* an idle pipeline: resend ever more rarely */
		}
	}
}

/* Role STAGE: send every pending output whose route holds a credit (routes to the host need
 * none: the host reads everything). Returns 1 if a tensor went to the host. */
static int pemesh_pe_flush(struct pemesh_pe *pe)
{
	int to_host = 0;

	for (uint8_t i = 0; i < pe->n_routes; i++) {
		struct pemesh_pe_route *rt = &pe->routes[i];
		struct pemesh_pe_peer *peer;

		if (rt->pending == 0u || (rt->r.pe != PEMESH_HOST_ID && rt->credits == 0u)) {
			continue;
		}
#if PEMESH_HOST_EEMBC
		if (rt->r.pe == PEMESH_HOST_ID) {
			/* the host is this PE's EEMBC side: a model output it holds itself */
			pemesh_eembc_local_result(pe, rt->r.b, rt->r.a);
			rt->pending = 0u;
			continue;
		}
#endif
		peer = pemesh_pe_peer(pe, rt->r.pe, 1); /* made at init: never NULL */
		if (peer == NULL) {
			continue;
		}
		pemesh_pe_send_tensor(pe, pemesh_pe_stage_link(rt->r.pe), rt->r.pe, rt->r.b,
				      rt->r.a, &peer->tx_seq);
		rt->pending = 0u;
		if (rt->r.pe == PEMESH_HOST_ID) {
			to_host = 1;
		} else {
			rt->credits--;
			rt->count++;
		}
	}
	return to_host;
}

static int pemesh_pe_outputs_busy(const struct pemesh_pe *pe)
{
	for (uint8_t i = 0; i < pe->n_routes; i++) {
		if (pe->routes[i].pending != 0u) {
			return 1;
		}
	}
	return 0;
}

/* Role STAGE: run, READY to every input's source, then the outputs by their routes. */
static void pemesh_pe_infer_stage(struct pemesh_pe *pe)
{
	struct pemesh_pe_peer *host = pemesh_pe_peer(pe, PEMESH_HOST_ID, 1);
	int32_t status = pemesh_pe_run_model(pe);
	int to_host = 0;

	/* the inputs are consumed (even by a failed run): their producers may refill them */
	for (uint8_t i = 0; i < pe->n_routes; i++) {
		struct pemesh_pe_route *rt = &pe->routes[i];

		if (rt->r.kind != PEMESH_ROUTE_SOURCE) {
			continue;
		}
		rt->count++;
		rt->ready_backoff = 0u;
		pemesh_pe_send_ready(pe, rt);
		pe->ready_sent++;
	}
	if (status != 0) {
		pemesh_pe_error(pe, PEMESH_LINK_HOST, PEMESH_HOST_ID, status, "model run failed");
		return;
	}
	for (uint16_t o = 0; o < pemesh_model.n_outputs; o++) {
		int routed = 0;

		for (uint8_t i = 0; i < pe->n_routes; i++) {
			struct pemesh_pe_route *rt = &pe->routes[i];

			if (rt->r.kind == PEMESH_ROUTE_OUTPUT && rt->r.a == o) {
				rt->pending = 1u;
				routed = 1;
			}
		}
		if (!routed && (pe->flags & PEMESH_FLAG_HOST_OUTPUTS) != 0u && host != NULL) {
			pemesh_pe_send_tensor(pe, PEMESH_LINK_HOST, PEMESH_HOST_ID, o, o,
					      &host->tx_seq);
			to_host = 1;
		}
	}
	if (pemesh_pe_flush(pe) || to_host) {
		pemesh_pe_stats(pe, PEMESH_LINK_HOST, PEMESH_HOST_ID);
	}
}

/* Role STAGE: run while the inputs are complete and the outputs are free. */
static void pemesh_pe_try_run(struct pemesh_pe *pe)
{
	if (pe->init_status != 0 || !pemesh_pe_inputs_complete(pe)) {
		return;
	}
	if (pemesh_pe_outputs_busy(pe)) {
		if (!pe->stalled) {
			pe->stalled = 1u;
			pe->credit_stalls++;
		}
		return;
	}
	pe->stalled = 0u;
	pemesh_pe_infer_stage(pe);
}

void pemesh_pe_stage_start(struct pemesh_pe *pe)
{
	for (uint16_t i = 0; i < pemesh_model.n_inputs; i++) {
		pe->in[i].next_chunk = pe->in[i].nchunks;
	}
	pemesh_pe_try_run(pe);
}

/* Role STAGE: 1 when f->src may send input f->stream: the input's SOURCE route names it, or
 * the input has no SOURCE route (then anyone may; streams that are no input fail later). */
static int pemesh_pe_source_ok(const struct pemesh_pe *pe, const struct pemesh_frame *f)
{
	int named = 0;

	for (uint8_t i = 0; i < pe->n_routes; i++) {
		const struct pemesh_route *r = &pe->routes[i].r;

		if (r->kind == PEMESH_ROUTE_SOURCE && r->a == f->stream) {
			if (r->pe == f->src) {
				return 1;
			}
			named = 1;
		}
	}
	return !named;
}

/* Role STAGE: accept TENSOR frames from each source only in seq order, and only from the
 * input's SOURCE. */
static void pemesh_pe_stage_tensor(struct pemesh_pe *pe, uint8_t link,
				   const struct pemesh_frame *f)
{
	struct pemesh_pe_peer *peer = pemesh_pe_peer(pe, f->src, 1);
	uint16_t ahead;

	if (peer == NULL) {
		pe->dropped_frames++; /* more sources than PEMESH_MAX_PEERS */
		return;
	}
	ahead = (uint16_t)(f->seq - peer->rx_expect);
	if (ahead >= 0x8000u) {
		pe->rx_duplicates++; /* seen before: its ACK may have been lost */
		pemesh_pe_ack(pe, link, f);
		return;
	}
	if (ahead != 0u) {
		pe->rx_gaps++; /* an earlier frame is missing: the writer resends from there */
		return;
	}
	peer->rx_expect++;
#if PEMESH_HOST_EEMBC
	if ((f->stream & PEMESH_EEMBC_RESULT_STREAM) != 0u) {
		pemesh_eembc_result(pe, link, f); /* a model result for the EEMBC side */
		return;
	}
#endif
	if (!pemesh_pe_source_ok(pe, f)) {
		pe->rx_wrong_source++;
		pemesh_pe_reject(pe, link, f, -EPERM,
				 "TENSOR from a PE that is not the SOURCE of this input");
		pemesh_pe_ack(pe, link, f); /* consumed: the link goes on */
		return;
	}
	(void)pemesh_pe_consume(pe, link, f);
	pemesh_pe_try_run(pe);
}

/* Role STAGE: a READY gives the credit back to the OUTPUT routes it names, when it asks for
 * the tensor the route sends next (a 2-byte READY, without a count, always does). */
static void pemesh_pe_ready(struct pemesh_pe *pe, const struct pemesh_frame *f)
{
	uint16_t stream;
	int matched = 0;
	int stale = 0;

	if (f->len < 2u) {
		pe->dropped_frames++;
		return;
	}
	stream = pemesh_get_le16(f->payload);
	for (uint8_t i = 0; i < pe->n_routes; i++) {
		struct pemesh_pe_route *rt = &pe->routes[i];

		if (rt->r.kind != PEMESH_ROUTE_OUTPUT || rt->r.pe != f->src || rt->r.b != stream) {
			continue;
		}
		if (f->len >= 4u && pemesh_get_le16(&f->payload[2]) != rt->count) {
			stale = 1; /* for a tensor already sent (repeated or late): no credit */
			continue;
		}
		rt->credits = 1u; /* one buffer per input: never more than one credit */
		matched = 1;
	}
	if (!matched) {
		if (stale) {
			pe->ready_stale++;
		} else {
			pe->dropped_frames++;
		}
		return;
	}
	pe->ready_received++;
	if (pemesh_pe_flush(pe)) {
		pemesh_pe_stats(pe, PEMESH_LINK_HOST, PEMESH_HOST_ID);
	}
	pemesh_pe_try_run(pe);
}

static uint32_t pemesh_wait(uint32_t kind, uint16_t tensor, uint16_t pe_id)
{
	return (kind << 24) | ((uint32_t)(tensor & 0xFFu) << 16) | pe_id;
}

uint32_t pemesh_pe_waiting(const struct pemesh_pe *pe)
{
	int any_input = 0;

	for (uint8_t i = 0; i < pe->n_routes; i++) {
		const struct pemesh_pe_route *rt = &pe->routes[i];

		if (rt->r.kind == PEMESH_ROUTE_OUTPUT && rt->pending != 0u && rt->credits == 0u) {
			return pemesh_wait(PEMESH_WAIT_CREDIT, rt->r.a, rt->r.pe);
		}
		if (rt->r.kind == PEMESH_ROUTE_SOURCE && pe->in[rt->r.a].next_chunk != 0u) {
			any_input = 1;
		}
	}
	if (!any_input) {
		return pemesh_wait(PEMESH_WAIT_NONE, 0u, 0u);
	}
	for (uint8_t i = 0; i < pe->n_routes; i++) {
		const struct pemesh_pe_route *rt = &pe->routes[i];

		if (rt->r.kind == PEMESH_ROUTE_SOURCE &&
		    pe->in[rt->r.a].next_chunk != pe->in[rt->r.a].nchunks) {
			return pemesh_wait(PEMESH_WAIT_INPUT, rt->r.a, rt->r.pe);
		}
	}
	return pemesh_wait(PEMESH_WAIT_NONE, 0u, 0u);
}

void pemesh_pe_frame_stage(struct pemesh_pe *pe, uint8_t link, const struct pemesh_frame *f)
{
	struct pemesh_pe_peer *peer;

	if (f->dst != pe->pe_id &&
	    !(f->dst == PEMESH_HOST_ID && (f->type == PEMESH_FRAME_PING ||
					   f->type == PEMESH_FRAME_STATS))) {
		pe->dropped_frames++; /* the fabric routes; frames for others are not ours */
		return;
	}
	switch (f->type) {
	case PEMESH_FRAME_TENSOR:
		pemesh_pe_stage_tensor(pe, link, f);
		break;
	case PEMESH_FRAME_READY:
		pemesh_pe_ready(pe, f);
		break;
	case PEMESH_FRAME_PING:
		/* a new session of that sender: its TENSOR seq starts again at 0 */
		peer = pemesh_pe_peer(pe, f->src, 1);
		if (peer != NULL) {
			peer->rx_expect = 0u;
		}
		pemesh_pe_pong(pe, link, f->src);
		break;
	case PEMESH_FRAME_STATS:
		pemesh_pe_stats(pe, link, f->src);
		break;
	default:
		pe->dropped_frames++;
		break;
	}
}
