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

int pemesh_frame_encode(const struct pemesh_frame *f, uint8_t *out, size_t cap)
{
	size_t total;
	uint32_t crc;

	if (!pemesh_type_valid(f->type) || f->nchunks == 0u || f->len > PEMESH_MAX_PAYLOAD ||
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

/* Remove the first n buffered bytes. */
static void pemesh_decoder_drop(struct pemesh_decoder *d, uint16_t n)
{
	memmove(d->buf, &d->buf[n], (size_t)(d->len - n));
	d->len = (uint16_t)(d->len - n);
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
		uint32_t crc;

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
		if (d->buf[2] != PEMESH_PROTO_VERSION || !pemesh_type_valid(d->buf[3]) ||
		    n > PEMESH_MAX_PAYLOAD) {
			d->bad_frames++;
			d->skipped_bytes++;
			pemesh_decoder_drop(d, 1u);
			continue;
		}
		if (d->len < PEMESH_FRAME_OVERHEAD + n) {
			return 0;
		}
		crc = pemesh_crc32(0u, &d->buf[2], PEMESH_HEADER_SIZE - 2u + n);
		if (crc != pemesh_get_le32(&d->buf[PEMESH_HEADER_SIZE + n])) {
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
