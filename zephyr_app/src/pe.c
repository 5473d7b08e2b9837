/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * The PE main loop: serve the host link (docs/CONTRACTS.md §1, "One inference on the host
 * link"). All mutable state sits in one struct pemesh_pe.
 */
#include <errno.h>
#include <string.h>

#include <pemesh/config.h>
#include <pemesh/frame.h>
#include <pemesh/model.h>
#include <pemesh/pe.h>
#include <pemesh/port.h>

/* PONG must fit one payload: 6 u16 + a u32 size per input and per output. */
_Static_assert(12u + 8u * PEMESH_MAX_TENSORS <= CONFIG_PEMESH_MAX_PAYLOAD,
	       "PONG does not fit CONFIG_PEMESH_MAX_PAYLOAD: lower CONFIG_PEMESH_MAX_TENSORS");

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

static void pemesh_pe_send(struct pemesh_pe *pe, uint8_t type, uint16_t dst, uint16_t stream,
			   uint16_t chunk, uint16_t nchunks, const uint8_t *payload, uint16_t len)
{
	struct pemesh_frame f = {
		.type = type, .src = pe->pe_id, .dst = dst, .stream = stream,
		.seq = pe->tx_seq, .chunk = chunk, .nchunks = nchunks, .len = len,
		.payload = payload,
	};
	int n = pemesh_frame_encode(&f, pe->tx, sizeof(pe->tx));

	if (n < 0) {
		return; /* cannot happen for the frames built here */
	}
	pe->tx_seq++;
	if (pemesh_link_write(PEMESH_LINK_HOST, pe->tx, (size_t)n) == 0) {
		pe->tx_frames++;
	}
}

static void pemesh_pe_error(struct pemesh_pe *pe, uint16_t dst, int32_t code, const char *msg)
{
	size_t n = strlen(msg);

	if (n > sizeof(pe->payload) - 4u) {
		n = sizeof(pe->payload) - 4u;
	}
	pemesh_put_le32(pe->payload, (uint32_t)code);
	memcpy(&pe->payload[4], msg, n);
	pemesh_pe_send(pe, PEMESH_FRAME_ERROR, dst, 0u, 0u, 1u, pe->payload, (uint16_t)(4u + n));
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

	memset(pe, 0, sizeof(*pe));
	pemesh_decoder_init(&pe->rx);
	/* read through volatile: the block is stamped per PE after linking */
	pe->pe_id = cfg->pe_id;
	pe->rx_window = (uint16_t)(PEMESH_RX_BUFFER_SIZE / PEMESH_MAX_FRAME);
	if (pe->rx_window == 0u) {
		pe->rx_window = 1u;
	}
	if (cfg->magic != PEMESH_PE_CONFIG_MAGIC || cfg->version != PEMESH_PE_CONFIG_VERSION) {
		pe->init_status = -EINVAL;
		pe->init_error = "bad pemesh_pe_config block (magic/version)";
		return pe->init_status;
	}
	if (pemesh_model.n_inputs > PEMESH_MAX_TENSORS ||
	    pemesh_model.n_outputs > PEMESH_MAX_TENSORS) {
		pe->init_status = -EINVAL;
		pe->init_error = "model has more tensors than CONFIG_PEMESH_MAX_TENSORS";
		return pe->init_status;
	}
	for (uint16_t i = 0; i < pemesh_model.n_inputs; i++) {
		pe->in[i].nchunks = pemesh_nchunks(pemesh_model.inputs[i].size);
	}
	return 0;
}

static void pemesh_pe_pong(struct pemesh_pe *pe, uint16_t dst)
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
	pemesh_pe_send(pe, PEMESH_FRAME_PONG, dst, 0u, 0u, 1u, pe->payload,
		       (uint16_t)(p - pe->payload));
}

static void pemesh_pe_stats(struct pemesh_pe *pe, uint16_t dst)
{
	uint32_t v[PEMESH_STAT_COUNT];
	uint32_t accel_calls;
	uint64_t accel_macs;

	pemesh_pe_accel_counters(&accel_calls, &accel_macs);
	v[PEMESH_STAT_INFERENCES] = pe->inferences;
	v[PEMESH_STAT_CYCLES_LO] = (uint32_t)pe->last_cycles;
	v[PEMESH_STAT_CYCLES_HI] = (uint32_t)(pe->last_cycles >> 32);
	v[PEMESH_STAT_RX_FRAMES] = pe->rx.rx_frames;
	v[PEMESH_STAT_RX_BAD_FRAMES] = pe->rx.bad_frames;
	v[PEMESH_STAT_RX_SKIPPED_BYTES] = pe->rx.skipped_bytes;
	v[PEMESH_STAT_TX_FRAMES] = pe->tx_frames;
	v[PEMESH_STAT_RUN_STATUS] = (uint32_t)pe->run_status;
	v[PEMESH_STAT_ACCEL_CALLS] = accel_calls;
	v[PEMESH_STAT_ACCEL_MACS_LO] = (uint32_t)accel_macs;
	v[PEMESH_STAT_ACCEL_MACS_HI] = (uint32_t)(accel_macs >> 32);

	pemesh_put_le16(&pe->payload[0], PEMESH_STAT_COUNT);
	pemesh_put_le16(&pe->payload[2], 0u);
	for (uint16_t i = 0; i < PEMESH_STAT_COUNT; i++) {
		pemesh_put_le32(&pe->payload[4u + 4u * i], v[i]);
	}
	pemesh_pe_send(pe, PEMESH_FRAME_STATS, dst, 0u, 0u, 1u, pe->payload,
		       (uint16_t)(4u + 4u * PEMESH_STAT_COUNT));
}

static void pemesh_pe_infer(struct pemesh_pe *pe, uint16_t dst)
{
	const struct pemesh_model *m = &pemesh_model;
	uint64_t t0 = pemesh_cycles();
	int32_t status = m->run();

	pe->last_cycles = pemesh_cycles() - t0;
	pe->run_status = status;
	pemesh_pe_reset_inputs(pe);
	if (status != 0) {
		pemesh_pe_error(pe, dst, status, "model run failed");
		return;
	}
	pe->inferences++;
	for (uint16_t o = 0; o < m->n_outputs; o++) {
		const uint8_t *data = m->outputs[o].data;
		uint32_t size = m->outputs[o].size;
		uint16_t nch = pemesh_nchunks(size);

		for (uint16_t c = 0; c < nch; c++) {
			uint32_t off = (uint32_t)c * PEMESH_MAX_PAYLOAD;
			uint32_t len = size - off;

			if (len > PEMESH_MAX_PAYLOAD) {
				len = PEMESH_MAX_PAYLOAD;
			}
			pemesh_pe_send(pe, PEMESH_FRAME_TENSOR, dst, o, c, nch, data + off,
				       (uint16_t)len);
		}
	}
	pemesh_pe_stats(pe, dst);
}

/* Validate and store one TENSOR chunk; returns 0 or -errno with *msg set. */
static int32_t pemesh_pe_store(struct pemesh_pe *pe, const struct pemesh_frame *f,
			       const char **msg)
{
	const struct pemesh_model *m = &pemesh_model;
	struct pemesh_pe_input *in;
	uint32_t off, expect;

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
	off = (uint32_t)f->chunk * PEMESH_MAX_PAYLOAD;
	expect = m->inputs[f->stream].size - off; /* off < size: chunk < nchunks */
	if (expect > PEMESH_MAX_PAYLOAD) {
		expect = PEMESH_MAX_PAYLOAD;
	}
	if (m->inputs[f->stream].size == 0u) {
		expect = 0u;
	}
	if (f->len != expect) {
		*msg = "TENSOR payload length does not match the input size";
		return -EMSGSIZE;
	}
	if (f->len > 0u) {
		memcpy((uint8_t *)m->inputs[f->stream].data + off, f->payload, f->len);
	}
	in->next_chunk = (uint16_t)(f->chunk + 1u);
	return 0;
}

static int pemesh_pe_inputs_complete(const struct pemesh_pe *pe)
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

static void pemesh_pe_tensor(struct pemesh_pe *pe, const struct pemesh_frame *f)
{
	const char *msg = "";
	int32_t err = pemesh_pe_store(pe, f, &msg);
	uint8_t ack[4];

	if (err != 0) {
		pemesh_pe_error(pe, f->src, err, msg);
	}
	/* every TENSOR frame is acknowledged once consumed (accepted or not) */
	pemesh_put_le16(&ack[0], f->seq);
	pemesh_put_le16(&ack[2], pe->rx_window);
	pemesh_pe_send(pe, PEMESH_FRAME_ACK, f->src, f->stream, 0u, 1u, ack, sizeof(ack));
	if (err == 0 && pemesh_pe_inputs_complete(pe)) {
		pemesh_pe_infer(pe, f->src);
	}
}

static void pemesh_pe_frame(struct pemesh_pe *pe, const struct pemesh_frame *f)
{
	/* on the host link a PE answers frames for its id or for 0xFFFF ("whoever is there") */
	if (f->dst != pe->pe_id && f->dst != PEMESH_HOST_ID) {
		pe->dropped_frames++;
		return;
	}
	switch (f->type) {
	case PEMESH_FRAME_PING:
		pemesh_pe_reset_inputs(pe);
		pemesh_pe_pong(pe, f->src);
		break;
	case PEMESH_FRAME_TENSOR:
		pemesh_pe_tensor(pe, f);
		break;
	case PEMESH_FRAME_CONFIG:
		pemesh_pe_error(pe, f->src, -ENOTSUP, "CONFIG frames are not supported yet");
		break;
	default:
		/* ACK/LOG/PONG/STATS/ERROR from the host need no answer */
		pe->dropped_frames++;
		break;
	}
}

void pemesh_pe_feed(struct pemesh_pe *pe, const uint8_t *data, size_t len)
{
	struct pemesh_frame f;

	while (len > 0u) {
		size_t taken = pemesh_decoder_write(&pe->rx, data, len);

		data += taken;
		len -= taken;
		while (pemesh_decoder_poll(&pe->rx, &f) > 0) {
			pemesh_pe_frame(pe, &f);
		}
	}
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
	for (;;) {
		size_t n = pemesh_link_read(PEMESH_LINK_HOST, pe->rx_chunk, sizeof(pe->rx_chunk));

		if (n == 0u) {
			pemesh_port_idle();
			continue;
		}
		pemesh_pe_feed(pe, pe->rx_chunk, n);
	}
}
