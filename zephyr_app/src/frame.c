/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * Frame encoder and the robust byte-stream decoder (docs/CONTRACTS.md §1).
 */
#include <errno.h>
#include <string.h>

#include <pemesh/crc32.h>
#include <pemesh/frame.h>

static int pemesh_type_valid(uint8_t type)
{
	return type >= PEMESH_FRAME_TENSOR && type <= PEMESH_FRAME_TYPE_MAX;
}

/* The 18 header bytes at h are plausible: version, type, length and 0 <= chunk < nchunks. */
static int pemesh_header_valid(const uint8_t *h)
{
	uint16_t chunk = pemesh_get_le16(&h[12]);
	uint16_t nchunks = pemesh_get_le16(&h[14]);

	return h[2] == PEMESH_PROTO_VERSION && pemesh_type_valid(h[3]) &&
	       pemesh_get_le16(&h[16]) <= PEMESH_MAX_PAYLOAD && nchunks != 0u && chunk < nchunks;
}

/* The CRC of the whole frame at f (payload length n) matches. */
static int pemesh_crc_valid(const uint8_t *f, uint16_t n)
{
	return pemesh_crc32(0u, &f[2], PEMESH_HEADER_SIZE - 2u + n) ==
	       pemesh_get_le32(&f[PEMESH_HEADER_SIZE + n]);
}

int pemesh_frame_encode(const struct pemesh_frame *f, uint8_t *out, size_t cap)
{
	size_t total;
	uint32_t crc;

	if (!pemesh_type_valid(f->type) || f->nchunks == 0u || f->chunk >= f->nchunks ||
	    f->len > PEMESH_MAX_PAYLOAD ||
	    (f->len > 0u && f->payload == NULL)) {
		return -EINVAL;
	}
	total = (size_t)f->len + PEMESH_FRAME_OVERHEAD;
	if (cap < total) {
		return -ENOSPC;
	}
	out[0] = PEMESH_SYNC0;
	out[1] = PEMESH_SYNC1;
	out[2] = PEMESH_PROTO_VERSION;
	out[3] = f->type;
	pemesh_put_le16(&out[4], f->src);
	pemesh_put_le16(&out[6], f->dst);
	pemesh_put_le16(&out[8], f->stream);
	pemesh_put_le16(&out[10], f->seq);
	pemesh_put_le16(&out[12], f->chunk);
	pemesh_put_le16(&out[14], f->nchunks);
	pemesh_put_le16(&out[16], f->len);
	if (f->len > 0u) {
		memcpy(&out[PEMESH_HEADER_SIZE], f->payload, f->len);
	}
	crc = pemesh_crc32(0u, &out[2], PEMESH_HEADER_SIZE - 2u + f->len);
	pemesh_put_le32(&out[PEMESH_HEADER_SIZE + f->len], crc);
	return (int)total;
}

void pemesh_decoder_init(struct pemesh_decoder *d)
{
	memset(d, 0, sizeof(*d));
}

size_t pemesh_decoder_pending(const struct pemesh_decoder *d)
{
	return (size_t)d->len - d->consume;
}

int pemesh_decoder_abandon(struct pemesh_decoder *d)
{
	size_t pending = pemesh_decoder_pending(d);

	if (pending == 0u) {
		return 0;
	}
	d->bad_frames++;
	d->skipped_bytes += (uint32_t)pending;
	d->len = 0u;
	d->consume = 0u;
	d->look = 0u;
	return 1;
}

/* Remove the first n buffered bytes. */
static void pemesh_decoder_drop(struct pemesh_decoder *d, uint16_t n)
{
	memmove(d->buf, &d->buf[n], (size_t)(d->len - n));
	d->len = (uint16_t)(d->len - n);
	d->look = 0u;
}

/*
 * The frame at buf[0] has a good header and claims `end` bytes. 1 when a sync inside it
 * starts a whole frame (good header and CRC) that ends before `end`: the frame at 0 was
 * truncated (or a real frame started inside it), so the decoder resynchronises. d->look
 * remembers where to continue: every inner position before it can never qualify.
 */
static int pemesh_decoder_inner(struct pemesh_decoder *d, uint16_t end)
{
	uint16_t lim = (uint16_t)(end - PEMESH_FRAME_OVERHEAD); /* p + 22 < end */
	uint16_t undecided = 0u;                                /* 0: none (p >= 1) */
	uint16_t p;

	if (lim > d->len) {
		lim = d->len;
	}
	for (p = d->look > 1u ? d->look : 1u; p < lim; p++) {
		uint16_t n, yend;

		if (d->buf[p] != PEMESH_SYNC0) {
			continue;
		}
		if (p + 1u >= d->len) {
			undecided = undecided != 0u ? undecided : p;
			break; /* nothing after p can be whole yet */
		}
		if (d->buf[p + 1u] != PEMESH_SYNC1) {
			continue;
		}
		if (p + PEMESH_HEADER_SIZE > d->len) {
			undecided = undecided != 0u ? undecided : p;
			break;
		}
		if (!pemesh_header_valid(&d->buf[p])) {
			continue;
		}
		n = pemesh_get_le16(&d->buf[p + 16u]);
		yend = (uint16_t)(p + PEMESH_FRAME_OVERHEAD + n);
		if (yend >= end) {
			continue;
		}
		if (yend > d->len) {
			undecided = undecided != 0u ? undecided : p; /* may still complete */
			continue;
		}
		if (pemesh_crc_valid(&d->buf[p], n)) {
			return 1;
		}
	}
	d->look = undecided != 0u ? undecided : p;
	return 0;
}

size_t pemesh_decoder_write(struct pemesh_decoder *d, const uint8_t *data, size_t len)
{
	size_t room;

	if (d->consume > 0u) {
		pemesh_decoder_drop(d, d->consume);
		d->consume = 0u;
	}
	room = sizeof(d->buf) - d->len;
	if (len > room) {
		len = room;
	}
	memcpy(&d->buf[d->len], data, len);
	d->len = (uint16_t)(d->len + len);
	return len;
}

int pemesh_decoder_poll(struct pemesh_decoder *d, struct pemesh_frame *out)
{
	if (d->consume > 0u) {
		pemesh_decoder_drop(d, d->consume);
		d->consume = 0u;
	}
	for (;;) {
		uint16_t i, n;

		if (d->len == 0u) {
			return 0;
		}
		if (d->buf[0] != PEMESH_SYNC0) {
			/* garbage: skip to the next possible sync start */
			for (i = 1u; i < d->len && d->buf[i] != PEMESH_SYNC0; i++) {
			}
			d->skipped_bytes += i;
			pemesh_decoder_drop(d, i);
			continue;
		}
		if (d->len < 2u) {
			return 0;
		}
		if (d->buf[1] != PEMESH_SYNC1) {
			d->skipped_bytes++;
			pemesh_decoder_drop(d, 1u);
			continue;
		}
		if (d->len < PEMESH_HEADER_SIZE) {
			return 0;
		}
		n = pemesh_get_le16(&d->buf[16]);
		if (!pemesh_header_valid(d->buf) ||
		    pemesh_decoder_inner(d, (uint16_t)(PEMESH_FRAME_OVERHEAD + n))) {
			/* a bad header, or a whole frame starts inside this one: resynchronise */
			d->bad_frames++;
			d->skipped_bytes++;
			pemesh_decoder_drop(d, 1u);
			continue;
		}
		if (d->len < PEMESH_FRAME_OVERHEAD + n) {
			return 0;
		}
		if (!pemesh_crc_valid(d->buf, n)) {
			d->bad_frames++;
			d->skipped_bytes++;
			pemesh_decoder_drop(d, 1u);
			continue;
		}
		out->type = d->buf[3];
		out->src = pemesh_get_le16(&d->buf[4]);
		out->dst = pemesh_get_le16(&d->buf[6]);
		out->stream = pemesh_get_le16(&d->buf[8]);
		out->seq = pemesh_get_le16(&d->buf[10]);
		out->chunk = pemesh_get_le16(&d->buf[12]);
		out->nchunks = pemesh_get_le16(&d->buf[14]);
		out->len = n;
		out->payload = &d->buf[PEMESH_HEADER_SIZE];
		d->consume = (uint16_t)(PEMESH_FRAME_OVERHEAD + n);
		d->rx_frames++;
		return 1;
	}
}
