/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * The pemesh wire format (docs/CONTRACTS.md §1), byte-compatible with
 * generator/wire.py. All integers little-endian.
 *
 *   off size field
 *   0   2    sync 0xA5 0x5A
 *   2   1    version (1)
 *   3   1    type (enum pemesh_frame_type)
 *   4   2    src PE id (0xFFFF = host)
 *   6   2    dst PE id (0xFFFF = host)
 *   8   2    stream (tensor index for TENSOR)
 *   10  2    seq (per sender, per link, wraps)
 *   12  2    chunk index
 *   14  2    chunk count (>= 1, > chunk index)
 *   16  2    payload length N (<= PEMESH_MAX_PAYLOAD)
 *   18  N    payload
 *   18+N 4   CRC-32 (zlib) over bytes [2, 18+N)
 */
#ifndef PEMESH_FRAME_H_
#define PEMESH_FRAME_H_

#include <stddef.h>
#include <stdint.h>

#include <pemesh/config.h>

#define PEMESH_SYNC0 0xA5u
#define PEMESH_SYNC1 0x5Au
#define PEMESH_PROTO_VERSION 1u
#define PEMESH_HEADER_SIZE 18u
#define PEMESH_FRAME_OVERHEAD 22u
/** The host's PE id (as src or dst). */
#define PEMESH_HOST_ID 0xFFFFu
/** Bytes of the largest frame. */
#define PEMESH_MAX_FRAME (PEMESH_FRAME_OVERHEAD + CONFIG_PEMESH_MAX_PAYLOAD)

/** Frame types. */
enum pemesh_frame_type {
	PEMESH_FRAME_TENSOR = 1,
	PEMESH_FRAME_CONFIG = 2,
	PEMESH_FRAME_PING = 3,
	PEMESH_FRAME_PONG = 4,
	PEMESH_FRAME_STATS = 5,
	PEMESH_FRAME_LOG = 6,
	PEMESH_FRAME_ERROR = 7,
	PEMESH_FRAME_ACK = 8,
	PEMESH_FRAME_READY = 9, /**< tensor credit: payload u16 stream (docs/CONTRACTS.md §6) */
};

/** The highest valid frame type. */
#define PEMESH_FRAME_TYPE_MAX PEMESH_FRAME_READY

/**
 * STATS value PEMESH_STAT_WAITING: bits 31..24 what a STAGE PE waits for, 23..16 the tensor
 * (input or output index), 15..0 the PE it waits on (0xFFFF = the host).
 * PEMESH_WAIT_NONE: nothing (idle, all inputs empty, outputs sent);
 * PEMESH_WAIT_INPUT: the rest of an input that has begun to arrive, or an input while
 * another input is complete; PEMESH_WAIT_CREDIT: a READY for an output that is ready to go.
 */
#define PEMESH_WAIT_NONE 0u
#define PEMESH_WAIT_INPUT 1u
#define PEMESH_WAIT_CREDIT 2u

/** Values of a STATS payload, in wire order (append only). */
enum pemesh_stat {
	PEMESH_STAT_INFERENCES = 0,
	PEMESH_STAT_CYCLES_LO,
	PEMESH_STAT_CYCLES_HI,
	PEMESH_STAT_RX_FRAMES,
	PEMESH_STAT_RX_BAD_FRAMES,
	PEMESH_STAT_RX_SKIPPED_BYTES,
	PEMESH_STAT_TX_FRAMES,
	PEMESH_STAT_RUN_STATUS,
	PEMESH_STAT_ACCEL_CALLS,
	PEMESH_STAT_ACCEL_MACS_LO,
	PEMESH_STAT_ACCEL_MACS_HI,
	PEMESH_STAT_RX_DUPLICATES,  /**< TENSOR frames older than expected: re-ACKed, ignored */
	PEMESH_STAT_RX_GAPS,        /**< TENSOR frames newer than expected: dropped, not ACKed */
	PEMESH_STAT_RX_DROPPED,     /**< good frames not for this PE or not handled */
	PEMESH_STAT_READY_SENT,     /**< READY frames sent */
	PEMESH_STAT_READY_RECEIVED, /**< READY frames that gave a credit back */
	PEMESH_STAT_CREDIT_STALLS,  /**< runs delayed because an output waited for a credit */
	PEMESH_STAT_RX_WRONG_SOURCE, /**< STAGE: TENSOR frames from a PE not the input's SOURCE */
	PEMESH_STAT_READY_RESENT,   /**< STAGE: READY frames sent again for a still-empty input */
	PEMESH_STAT_READY_STALE,    /**< STAGE: READY frames for a tensor already sent (ignored) */
	PEMESH_STAT_WAITING,        /**< STAGE: what the PE waits for (PEMESH_WAIT_*) */
	PEMESH_STAT_COUNT, /**< number of values */
};

/** A decoded (or to-be-encoded) frame. */
struct pemesh_frame {
	uint8_t type;           /**< enum pemesh_frame_type */
	uint16_t src;           /**< sender PE id */
	uint16_t dst;           /**< receiver PE id */
	uint16_t stream;        /**< tensor index for TENSOR */
	uint16_t seq;           /**< sequence number */
	uint16_t chunk;         /**< chunk index */
	uint16_t nchunks;       /**< chunk count (>= 1) */
	uint16_t len;           /**< payload bytes */
	const uint8_t *payload; /**< payload (decoder: valid until the next decoder call) */
};

/**
 * @brief Encode a frame.
 * @param f   The frame (f->len <= PEMESH_MAX_PAYLOAD, f->chunk < f->nchunks).
 * @param out Output buffer.
 * @param cap Its size (PEMESH_MAX_FRAME is always enough).
 * @retval >0 number of bytes written (f->len + PEMESH_FRAME_OVERHEAD)
 * @retval -EINVAL bad type, chunk count or payload length
 * @retval -ENOSPC @p cap too small
 */
int pemesh_frame_encode(const struct pemesh_frame *f, uint8_t *out, size_t cap);

/**
 * A byte-stream decoder (docs/CONTRACTS.md §1).
 *
 * Scans for the sync, reads the header, waits for the whole frame, checks the CRC. A bad
 * version, type, length or chunk field (nchunks 0, chunk >= nchunks), or a bad CRC, counts
 * one bad frame, drops **one** byte and rescans, so a real frame starting inside garbage is
 * still found. A frame whose claimed extent holds a whole good frame starting after its own
 * sync (a truncated frame followed by a real one) is a bad frame as soon as that inner frame
 * is complete: the decoder resynchronises there and never waits for the missing bytes.
 * Every byte is either part of a delivered frame, counted in skipped_bytes, or still
 * buffered (pending). The result does not depend on how the bytes are split into writes.
 * The caller owns the struct (no malloc); it holds at most PEMESH_MAX_FRAME bytes.
 */
struct pemesh_decoder {
	uint8_t buf[PEMESH_MAX_FRAME]; /**< bytes not yet decided */
	uint16_t len;                  /**< bytes in buf */
	uint16_t consume;              /**< bytes of the last delivered frame, dropped lazily */
	uint16_t look;                 /**< where the scan for a frame inside buf[0]'s resumes */
	uint32_t rx_frames;            /**< frames delivered */
	uint32_t bad_frames;           /**< sync found but header or CRC bad */
	uint32_t skipped_bytes;        /**< bytes dropped (garbage and bad-frame starts) */
};

/** @brief Reset a decoder (buffer and counters). */
void pemesh_decoder_init(struct pemesh_decoder *d);

/**
 * @brief Append received bytes.
 * @retval number of bytes taken (less than @p len only when the buffer is full: call
 *         pemesh_decoder_poll() until it returns 0, then write the rest)
 */
size_t pemesh_decoder_write(struct pemesh_decoder *d, const uint8_t *data, size_t len);

/**
 * @brief Take the next whole, CRC-checked frame out of the buffered bytes.
 * @param out Receives the frame; its payload points into the decoder and stays valid
 *            until the next call on @p d.
 * @retval 1 a frame was delivered
 * @retval 0 more bytes are needed
 */
int pemesh_decoder_poll(struct pemesh_decoder *d, struct pemesh_frame *out);

/** @brief Bytes buffered but not yet decided (for tests and statistics). */
size_t pemesh_decoder_pending(const struct pemesh_decoder *d);

/**
 * @brief Give up the bytes still pending (a frame that stopped arriving): counted as one bad
 * frame and skipped bytes; the next byte starts afresh.
 * @retval 1 bytes were pending, 0 none
 */
int pemesh_decoder_abandon(struct pemesh_decoder *d);

/** @brief Store a u16/u32 little-endian. */
static inline void pemesh_put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}
static inline void pemesh_put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}
/** @brief Load a u16/u32 little-endian. */
static inline uint16_t pemesh_get_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t pemesh_get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
	       ((uint32_t)p[3] << 24);
}

#endif /* PEMESH_FRAME_H_ */
