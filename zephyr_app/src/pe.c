/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * The PE main loop. Role SINGLE serves the host link (docs/CONTRACTS.md §1, "One inference
 * on the host link"); role STAGE, a pipeline stage of a mesh (docs/CONTRACTS.md §6), is in
 * pe_stage.c. This file holds what both roles send (PONG, STATS, ERROR, ACK, TENSOR chunks)
 * and the input reassembly. All mutable state sits in one struct pemesh_pe.
 */
#include <errno.h>
#include <string.h>

#include <pemesh/config.h>
#include <pemesh/frame.h>
#include <pemesh/model.h>
#include <pemesh/pe.h>
#include <pemesh/port.h>

#include "pe_internal.h"

/* PONG must fit one payload: 6 u16 + a u32 size per input and per output. */
_Static_assert(12u + 8u * PEMESH_MAX_TENSORS <= CONFIG_PEMESH_MAX_PAYLOAD,
	       "PONG does not fit CONFIG_PEMESH_MAX_PAYLOAD: lower CONFIG_PEMESH_MAX_TENSORS");
_Static_assert(4u + 4u * PEMESH_STAT_COUNT <= CONFIG_PEMESH_MAX_PAYLOAD,
	       "STATS does not fit CONFIG_PEMESH_MAX_PAYLOAD");
_Static_assert(PEMESH_MAX_TENSORS <= 255, "route entries index tensors with a u8");

/** The PE context of pemesh_pe_main() (the runtime's only mutable global). */
static struct pemesh_pe pemesh_pe_ctx;

__attribute__((weak)) void pemesh_pe_accel_counters(uint32_t *calls, uint64_t *macs)
{
	*calls = 0u;
	*macs = 0u;
}

static uint16_t pemesh_nchunks(uint32_t size)
{
	uint32_t n = (size + PEMESH_MAX_PAYLOAD - 1u) / PEMESH_MAX_PAYLOAD;

	return (uint16_t)(n == 0u ? 1u : n);
}

/* Payload bytes of chunk c of a tensor of `size` bytes (one empty chunk for size 0). */
static uint16_t pemesh_chunk_len(uint32_t size, uint16_t c)
{
	uint32_t off = (uint32_t)c * PEMESH_MAX_PAYLOAD;
	uint32_t len = size > off ? size - off : 0u;

	return (uint16_t)(len > PEMESH_MAX_PAYLOAD ? PEMESH_MAX_PAYLOAD : len);
}

static int pemesh_pe_is_stage(const struct pemesh_pe *pe)
{
	return pe->role == PEMESH_ROLE_STAGE;
}


static void pemesh_pe_write(struct pemesh_pe *pe, uint8_t link, const struct pemesh_frame *f)
{
	int n = pemesh_frame_encode(f, pe->tx, sizeof(pe->tx));

	if (n < 0) {
		return; /* cannot happen for the frames built here */
	}
#if PEMESH_HOST_EEMBC
	if (link == PEMESH_LINK_HOST) {
		return; /* link 0 speaks EEMBC text: frames for the host are not sent */
	}
#endif
	if (pemesh_link_write(link, pe->tx, (size_t)n) == 0) {
		pe->tx_frames++;
	}
}

/* One single-chunk frame with the PE's own seq counter (every frame in SINGLE, every
 * non-TENSOR frame in STAGE). */
void pemesh_pe_send(struct pemesh_pe *pe, uint8_t link, uint8_t type, uint16_t dst,
		    uint16_t stream, const uint8_t *payload, uint16_t len)
{
	struct pemesh_frame f = {
		.type = type, .src = pe->pe_id, .dst = dst, .stream = stream,
		.seq = pe->tx_seq++, .chunk = 0u, .nchunks = 1u, .len = len, .payload = payload,
	};

	pemesh_pe_write(pe, link, &f);
}

/* Every chunk of output `out` to dst as input `stream`; seq numbers from *seq. */
void pemesh_pe_send_tensor(struct pemesh_pe *pe, uint8_t link, uint16_t dst, uint16_t stream,
			   uint16_t out, uint16_t *seq)
{
	const uint8_t *data = pemesh_model.outputs[out].data;
	uint32_t size = pemesh_model.outputs[out].size;
	uint16_t nch = pemesh_nchunks(size);

	for (uint16_t c = 0; c < nch; c++) {
		struct pemesh_frame f = {
			.type = PEMESH_FRAME_TENSOR, .src = pe->pe_id, .dst = dst,
			.stream = stream, .seq = (*seq)++, .chunk = c, .nchunks = nch,
			.len = pemesh_chunk_len(size, c),
			.payload = data + (uint32_t)c * PEMESH_MAX_PAYLOAD,
		};

		pemesh_pe_write(pe, link, &f);
	}
}

void pemesh_pe_error(struct pemesh_pe *pe, uint8_t link, uint16_t dst, int32_t code,
		     const char *msg)
{
	size_t n = strlen(msg);

	if (n > sizeof(pe->payload) - 4u) {
		n = sizeof(pe->payload) - 4u;
	}
	pemesh_put_le32(pe->payload, (uint32_t)code);
	memcpy(&pe->payload[4], msg, n);
	pemesh_pe_send(pe, link, PEMESH_FRAME_ERROR, dst, 0u, pe->payload, (uint16_t)(4u + n));
}

/* Append the NUL-terminated s to text[*pos] (never past cap - 1; text stays terminated). */
static void pemesh_text(char *text, size_t cap, size_t *pos, const char *s)
{
	while (*s != '\0' && *pos + 1u < cap) {
		text[(*pos)++] = *s++;
	}
	text[*pos] = '\0';
}

/* Append v in decimal. */
static void pemesh_text_u16(char *text, size_t cap, size_t *pos, uint16_t v)
{
	char digits[6];
	size_t n = sizeof(digits) - 1u;

	digits[n] = '\0';
	do {
		digits[--n] = (char)('0' + v % 10u);
		v = (uint16_t)(v / 10u);
	} while (v != 0u);
	pemesh_text(text, cap, pos, &digits[n]);
}

void pemesh_pe_reject(struct pemesh_pe *pe, uint8_t link, const struct pemesh_frame *f,
		      int32_t code, const char *msg)
{
	char text[160];
	size_t pos = 0u;

	/* "<msg> (from PE 1, stream 0, chunk 2/3, seq 7)" */
	pemesh_text(text, sizeof(text), &pos, msg);
	if (f->src == PEMESH_HOST_ID) {
		pemesh_text(text, sizeof(text), &pos, " (from the host");
	} else {
		pemesh_text(text, sizeof(text), &pos, " (from PE ");
		pemesh_text_u16(text, sizeof(text), &pos, f->src);
	}
	pemesh_text(text, sizeof(text), &pos, ", stream ");
	pemesh_text_u16(text, sizeof(text), &pos, f->stream);
	pemesh_text(text, sizeof(text), &pos, ", chunk ");
	pemesh_text_u16(text, sizeof(text), &pos, f->chunk);
	pemesh_text(text, sizeof(text), &pos, "/");
	pemesh_text_u16(text, sizeof(text), &pos, f->nchunks);
	pemesh_text(text, sizeof(text), &pos, ", seq ");
	pemesh_text_u16(text, sizeof(text), &pos, f->seq);
	pemesh_text(text, sizeof(text), &pos, ")");
	pemesh_pe_error(pe, link, f->src, code, text);
	if (pemesh_pe_is_stage(pe) && f->src != PEMESH_HOST_ID) {
		/* PE-to-PE rejections must reach the host too (the sender only counts them) */
		pemesh_pe_error(pe, PEMESH_LINK_HOST, PEMESH_HOST_ID, code, text);
	}
}

static void pemesh_pe_reset_inputs(struct pemesh_pe *pe)
{
	for (uint16_t i = 0; i < PEMESH_MAX_TENSORS; i++) {
		pe->in[i].next_chunk = 0u;
	}
}

int pemesh_pe_init(struct pemesh_pe *pe)
{
	const volatile struct pemesh_pe_config *cfg = &pemesh_pe_config;
	const char *why = NULL;

	memset(pe, 0, sizeof(*pe));
	for (uint8_t l = 0; l < PEMESH_PE_RX_LINKS; l++) {
		pemesh_decoder_init(&pe->rx[l]);
	}
	pe->byte_timeout = pemesh_cycles_per_second() * PEMESH_BYTE_TIMEOUT_MS / 1000u;
	/* read through volatile: the block is stamped per PE after linking */
	pe->pe_id = cfg->pe_id;
	pe->rx_window = (uint16_t)(PEMESH_RX_BUFFER_SIZE / PEMESH_MAX_FRAME);
	if (pe->rx_window == 0u) {
		pe->rx_window = 1u;
	}
	if (pemesh_config_check(cfg, &why) != 0) {
		pe->init_status = -EINVAL;
		pe->init_error = why;
		return pe->init_status;
	}
	pe->role = cfg->role;
	pe->flags = cfg->flags;
	if (pemesh_model.n_inputs > PEMESH_MAX_TENSORS ||
	    pemesh_model.n_outputs > PEMESH_MAX_TENSORS) {
		pe->init_status = -EINVAL;
		pe->init_error = "model has more tensors than CONFIG_PEMESH_MAX_TENSORS";
		return pe->init_status;
	}
	for (uint16_t i = 0; i < pemesh_model.n_inputs; i++) {
		pe->in[i].nchunks = pemesh_nchunks(pemesh_model.inputs[i].size);
	}
	if (pemesh_pe_is_stage(pe)) {
		pe->init_status = pemesh_pe_stage_init(pe, cfg);
	}
	return pe->init_status;
}

void pemesh_pe_pong(struct pemesh_pe *pe, uint8_t link, uint16_t dst)
{
	const struct pemesh_model *m = &pemesh_model;
	uint8_t *p = pe->payload;
	uint16_t ni = pe->init_status == 0 ? m->n_inputs : 0u;
	uint16_t no = pe->init_status == 0 ? m->n_outputs : 0u;

	pemesh_put_le16(&p[0], PEMESH_PROTO_VERSION);
	pemesh_put_le16(&p[2], PEMESH_MAX_PAYLOAD);
	pemesh_put_le16(&p[4], pe->rx_window);
	pemesh_put_le16(&p[6], pe->pe_id);
	pemesh_put_le16(&p[8], ni);
	pemesh_put_le16(&p[10], no);
	p += 12;
	for (uint16_t i = 0; i < ni; i++, p += 4) {
		pemesh_put_le32(p, m->inputs[i].size);
	}
	for (uint16_t i = 0; i < no; i++, p += 4) {
		pemesh_put_le32(p, m->outputs[i].size);
	}
	pemesh_pe_send(pe, link, PEMESH_FRAME_PONG, dst, 0u, pe->payload,
		       (uint16_t)(p - pe->payload));
}

void pemesh_pe_stats(struct pemesh_pe *pe, uint8_t link, uint16_t dst)
{
	uint32_t v[PEMESH_STAT_COUNT];
	uint32_t accel_calls;
	uint64_t accel_macs;

	memset(v, 0, sizeof(v));
	pemesh_pe_accel_counters(&accel_calls, &accel_macs);
	for (uint8_t l = 0; l < PEMESH_PE_RX_LINKS; l++) {
		v[PEMESH_STAT_RX_FRAMES] += pe->rx[l].rx_frames;
		v[PEMESH_STAT_RX_BAD_FRAMES] += pe->rx[l].bad_frames;
		v[PEMESH_STAT_RX_SKIPPED_BYTES] += pe->rx[l].skipped_bytes;
	}
	v[PEMESH_STAT_INFERENCES] = pe->inferences;
	v[PEMESH_STAT_CYCLES_LO] = (uint32_t)pe->last_cycles;
	v[PEMESH_STAT_CYCLES_HI] = (uint32_t)(pe->last_cycles >> 32);
	v[PEMESH_STAT_TX_FRAMES] = pe->tx_frames;
	v[PEMESH_STAT_RUN_STATUS] = (uint32_t)pe->run_status;
	v[PEMESH_STAT_ACCEL_CALLS] = accel_calls;
	v[PEMESH_STAT_ACCEL_MACS_LO] = (uint32_t)accel_macs;
	v[PEMESH_STAT_ACCEL_MACS_HI] = (uint32_t)(accel_macs >> 32);
	v[PEMESH_STAT_RX_DUPLICATES] = pe->rx_duplicates;
	v[PEMESH_STAT_RX_GAPS] = pe->rx_gaps;
	v[PEMESH_STAT_RX_DROPPED] = pe->dropped_frames;
	v[PEMESH_STAT_READY_SENT] = pe->ready_sent;
	v[PEMESH_STAT_READY_RECEIVED] = pe->ready_received;
	v[PEMESH_STAT_CREDIT_STALLS] = pe->credit_stalls;
	v[PEMESH_STAT_RX_WRONG_SOURCE] = pe->rx_wrong_source;
	v[PEMESH_STAT_READY_RESENT] = pe->ready_resent;
	v[PEMESH_STAT_READY_STALE] = pe->ready_stale;
	v[PEMESH_STAT_WAITING] = pemesh_pe_is_stage(pe) ? pemesh_pe_waiting(pe) : 0u;

	pemesh_put_le16(&pe->payload[0], PEMESH_STAT_COUNT);
	pemesh_put_le16(&pe->payload[2], 0u);
	for (uint16_t i = 0; i < PEMESH_STAT_COUNT; i++) {
		pemesh_put_le32(&pe->payload[4u + 4u * i], v[i]);
	}
	pemesh_pe_send(pe, link, PEMESH_FRAME_STATS, dst, 0u, pe->payload,
		       (uint16_t)(4u + 4u * PEMESH_STAT_COUNT));
}

/* Run the model on the complete inputs; 0 or the model's status (inputs are reset). */
int32_t pemesh_pe_run_model(struct pemesh_pe *pe)
{
	uint64_t t0 = pemesh_cycles();
	int32_t status = pemesh_model.run();

	pe->last_cycles = pemesh_cycles() - t0;
	pe->run_status = status;
	pemesh_pe_reset_inputs(pe);
	if (status == 0) {
		pe->inferences++;
	}
	return status;
}

/* Role SINGLE: run, then every output and one STATS frame to the sender of the last input. */
static void pemesh_pe_infer_single(struct pemesh_pe *pe, uint16_t dst)
{
	int32_t status = pemesh_pe_run_model(pe);

	if (status != 0) {
		pemesh_pe_error(pe, PEMESH_LINK_HOST, dst, status, "model run failed");
		return;
	}
	for (uint16_t o = 0; o < pemesh_model.n_outputs; o++) {
		pemesh_pe_send_tensor(pe, PEMESH_LINK_HOST, dst, o, o, &pe->tx_seq);
	}
	pemesh_pe_stats(pe, PEMESH_LINK_HOST, dst);
}

/* Validate and store one TENSOR chunk; returns 0 or -errno with *msg set. */
static int32_t pemesh_pe_store(struct pemesh_pe *pe, const struct pemesh_frame *f,
			       const char **msg)
{
	const struct pemesh_model *m = &pemesh_model;
	struct pemesh_pe_input *in;
	uint32_t off;

	if (pe->init_status != 0) {
		*msg = pe->init_error;
		return pe->init_status;
	}
	if (f->stream >= m->n_inputs) {
		*msg = "TENSOR stream is not an input of this PE";
		return -EINVAL;
	}
	in = &pe->in[f->stream];
	if (f->nchunks != in->nchunks || f->chunk >= in->nchunks) {
		*msg = "TENSOR chunk count does not match the input size";
		return -EMSGSIZE;
	}
	if (f->chunk != 0u && f->chunk != in->next_chunk) {
		*msg = "TENSOR chunk out of order";
		return -EPROTO;
	}
	if (f->len != pemesh_chunk_len(m->inputs[f->stream].size, f->chunk)) {
		*msg = "TENSOR payload length does not match the input size";
		return -EMSGSIZE;
	}
	off = (uint32_t)f->chunk * PEMESH_MAX_PAYLOAD;
	if (f->len > 0u) {
		memcpy((uint8_t *)m->inputs[f->stream].data + off, f->payload, f->len);
	}
	in->next_chunk = (uint16_t)(f->chunk + 1u);
	return 0;
}

int pemesh_pe_inputs_complete(const struct pemesh_pe *pe)
{
	if (pemesh_model.n_inputs == 0u) {
		return 0;
	}
	for (uint16_t i = 0; i < pemesh_model.n_inputs; i++) {
		if (pe->in[i].next_chunk != pe->in[i].nchunks) {
			return 0;
		}
	}
	return 1;
}

void pemesh_pe_ack(struct pemesh_pe *pe, uint8_t link, const struct pemesh_frame *f)
{
	uint8_t ack[4];

	pemesh_put_le16(&ack[0], f->seq);
	pemesh_put_le16(&ack[2], pe->rx_window);
	pemesh_pe_send(pe, link, PEMESH_FRAME_ACK, f->src, f->stream, ack, sizeof(ack));
}

/* Store (or reject with ERROR) one TENSOR frame and ACK it on the link it came from. */
int32_t pemesh_pe_consume(struct pemesh_pe *pe, uint8_t link, const struct pemesh_frame *f)
{
	const char *msg = "";
	int32_t err = pemesh_pe_store(pe, f, &msg);

	if (err != 0) {
		pemesh_pe_reject(pe, link, f, err, msg);
	}
	/* every consumed TENSOR frame is acknowledged (accepted or not) */
	pemesh_pe_ack(pe, link, f);
	return err;
}


/* Role SINGLE: 1 when TENSOR frame f is a retransmission of one already consumed (its seq
 * is not newer than the last one accepted from the same sender, modulo 2^16). */
static int pemesh_pe_single_duplicate(const struct pemesh_pe *pe, const struct pemesh_frame *f)
{
	return pe->host_rx_any != 0u && f->src == pe->host_rx_src &&
	       (uint16_t)(pe->host_rx_seq - f->seq) < 0x8000u;
}

static void pemesh_pe_frame_single(struct pemesh_pe *pe, const struct pemesh_frame *f)
{
	/* on the host link a PE answers frames for its id or for 0xFFFF ("whoever is there") */
	if (f->dst != pe->pe_id && f->dst != PEMESH_HOST_ID) {
		pe->dropped_frames++;
		return;
	}
	switch (f->type) {
	case PEMESH_FRAME_PING:
		pemesh_pe_reset_inputs(pe);
		pe->host_rx_any = 0u; /* a new session: any seq is new */
		pemesh_pe_pong(pe, PEMESH_LINK_HOST, f->src);
		break;
	case PEMESH_FRAME_TENSOR:
		if (pemesh_pe_single_duplicate(pe, f)) {
			pe->rx_duplicates++; /* its ACK was lost: the host resent it */
			pemesh_pe_ack(pe, PEMESH_LINK_HOST, f);
			break;
		}
		if (pemesh_pe_consume(pe, PEMESH_LINK_HOST, f) != 0) {
			break; /* rejected (e.g. after a gap): its resend is not a duplicate */
		}
		pe->host_rx_any = 1u;
		pe->host_rx_src = f->src;
		pe->host_rx_seq = f->seq;
		if (pemesh_pe_inputs_complete(pe)) {
			pemesh_pe_infer_single(pe, f->src);
		}
		break;
	case PEMESH_FRAME_STATS:
		pemesh_pe_stats(pe, PEMESH_LINK_HOST, f->src);
		break;
	case PEMESH_FRAME_CONFIG:
		pemesh_pe_error(pe, PEMESH_LINK_HOST, f->src, -ENOTSUP,
				"CONFIG frames are not supported yet");
		break;
	default:
		/* ACK/LOG/PONG/ERROR/READY from the host need no answer */
		pe->dropped_frames++;
		break;
	}
}

void pemesh_pe_feed_link(struct pemesh_pe *pe, uint8_t link, const uint8_t *data, size_t len)
{
	struct pemesh_decoder *rx;
	struct pemesh_frame f;

	if (link >= PEMESH_PE_RX_LINKS) {
		return;
	}
#if PEMESH_HOST_EEMBC
	if (link == PEMESH_LINK_HOST) {
		pemesh_eembc_feed(pe, data, len); /* link 0 speaks text, not frames */
		return;
	}
#endif
	rx = &pe->rx[link];
	if (len > 0u && pe->byte_timeout != 0u) {
		pe->rx_at[link] = pemesh_cycles();
	}
	while (len > 0u) {
		size_t taken = pemesh_decoder_write(rx, data, len);

		data += taken;
		len -= taken;
		while (pemesh_decoder_poll(rx, &f) > 0) {
			if (pemesh_pe_is_stage(pe)) {
				pemesh_pe_frame_stage(pe, link, &f);
			} else {
				pemesh_pe_frame_single(pe, &f);
			}
		}
	}
}

void pemesh_pe_feed(struct pemesh_pe *pe, const uint8_t *data, size_t len)
{
	pemesh_pe_feed_link(pe, PEMESH_LINK_HOST, data, len);
}

int pemesh_pe_main(void)
{
	struct pemesh_pe *pe = &pemesh_pe_ctx;
	int rc = pemesh_port_init();

	if (rc != 0) {
		return rc;
	}
	/* a failed init is reported to the host (PONG without tensors, ERROR on TENSOR) */
	(void)pemesh_pe_init(pe);
#if PEMESH_HOST_EEMBC
	pemesh_eembc_start(pe);
#endif
	for (;;) {
		uint8_t links = pemesh_pe_is_stage(pe) ? PEMESH_PE_RX_LINKS : 1u;
		size_t total = 0u;

		for (uint8_t l = 0; l < links; l++) {
			uint64_t now = pemesh_cycles(); /* before the read: what came since is read */
			size_t n = pemesh_link_read(l, pe->rx_chunk, sizeof(pe->rx_chunk));

			if (n > 0u) {
				pemesh_pe_feed_link(pe, l, pe->rx_chunk, n);
				total += n;
			} else {
				pemesh_pe_expire(pe, l, now);
			}
		}
		pemesh_pe_tick(pe, pemesh_cycles());
		if (total == 0u) {
			pemesh_port_idle();
		}
	}
}
