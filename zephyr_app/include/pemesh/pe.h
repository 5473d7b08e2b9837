/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * The PE main loop (docs/CONTRACTS.md §1, "One inference on the host link").
 */
#ifndef PEMESH_PE_H_
#define PEMESH_PE_H_

#include <stddef.h>
#include <stdint.h>

#include <pemesh/config.h>
#include <pemesh/eembc.h>
#include <pemesh/frame.h>

/** Links the PE reads: the host link, plus the mesh link in role STAGE (link 2 is unused). */
#define PEMESH_PE_RX_LINKS (PEMESH_LINKS < 2 ? PEMESH_LINKS : 2)
/** Peers a PE keeps sequence numbers for: every route's PE, the host, one spare. */
#define PEMESH_MAX_PEERS (PEMESH_MAX_ROUTES + 2u)

/** Reassembly state of one model input. */
struct pemesh_pe_input {
	uint16_t next_chunk; /**< chunks 0..next_chunk-1 have arrived (in order) */
	uint16_t nchunks;    /**< chunks this input takes: max(1, ceil(size / MAX_PAYLOAD)) */
};

/** Link-level sequence state with one other party (role STAGE). */
struct pemesh_pe_peer {
	uint16_t id;        /**< the peer's PE id (0xFFFF = host) */
	uint16_t rx_expect; /**< seq of the next TENSOR frame accepted from it */
	uint16_t tx_seq;    /**< seq of the next TENSOR frame sent to it */
	uint16_t used;      /**< 1 when this slot is taken */
};

/** A route entry with its flow-control state (role STAGE). */
struct pemesh_pe_route {
	struct pemesh_route r; /**< the entry from pemesh_pe_config */
	uint8_t credits;       /**< OUTPUT: tensors it may still send (0 or 1) */
	uint8_t pending;       /**< OUTPUT: the last run's output still waits to go out */
	uint16_t count;        /**< OUTPUT: tensors sent; SOURCE: tensors consumed (mod 2^16) */
	uint64_t ready_at;     /**< SOURCE: pemesh_cycles() when READY last went out */
	uint8_t ready_backoff; /**< SOURCE: resends since the last run (the period doubles) */
};

/**
 * The PE context: all the runtime's mutable state (there are no other globals in the
 * core; ports keep their own hardware state). pemesh_pe_main() owns one, statically.
 */
struct pemesh_pe {
	struct pemesh_decoder rx[PEMESH_PE_RX_LINKS]; /**< one decoder per link read */
	uint8_t rx_chunk[64];                    /**< bytes read from the port per pass */
	uint8_t tx[PEMESH_MAX_FRAME];            /**< frame being sent */
	uint8_t payload[PEMESH_MAX_PAYLOAD];     /**< payload being built (PONG, STATS, ERROR) */
	int32_t init_status;                     /**< 0, or why this PE cannot run the model */
	const char *init_error;                  /**< message for a non-zero init_status */
	uint16_t pe_id;                          /**< from pemesh_pe_config */
	uint16_t tx_seq;                         /**< SINGLE: next seq; STAGE: next non-TENSOR seq */
	uint16_t rx_window;                      /**< TENSOR frames a writer may have in flight */
	uint8_t role;                            /**< enum pemesh_role */
	uint8_t n_routes;                        /**< entries in routes[] */
	uint32_t flags;                          /**< PEMESH_FLAG_* */
	uint8_t stalled;                         /**< inputs complete but outputs still pending */
	uint8_t host_rx_any;                     /**< SINGLE: host_rx_seq holds an accepted seq */
	uint16_t host_rx_src;                    /**< SINGLE: sender of the last TENSOR accepted */
	uint16_t host_rx_seq;                    /**< SINGLE: seq of the last TENSOR accepted */
	struct pemesh_pe_input in[PEMESH_MAX_TENSORS]; /**< reassembly per input */
	struct pemesh_pe_route routes[PEMESH_MAX_ROUTES]; /**< STAGE: routes and credits */
	struct pemesh_pe_peer peers[PEMESH_MAX_PEERS];    /**< STAGE: seq state per peer */
	uint32_t inferences;                     /**< completed model runs */
	uint64_t last_cycles;                    /**< cycles of the last run */
	int32_t run_status;                      /**< status of the last run */
	uint32_t tx_frames;                      /**< frames sent */
	uint32_t dropped_frames;                 /**< good frames not for this PE or unknown */
	uint32_t rx_duplicates;                  /**< TENSOR frames re-ACKed and ignored */
	uint32_t rx_gaps;                        /**< STAGE: TENSOR frames dropped (seq gap) */
	uint32_t ready_sent;                     /**< STAGE: READY frames sent */
	uint32_t ready_received;                 /**< STAGE: READY frames that gave a credit */
	uint32_t credit_stalls;                  /**< STAGE: runs delayed by missing credits */
	uint32_t rx_wrong_source;                /**< STAGE: TENSOR frames not from the SOURCE */
	uint32_t ready_resent;                   /**< STAGE: READY frames sent again while idle */
	uint32_t ready_stale;                    /**< STAGE: READY frames for an older tensor */
	uint64_t ready_period;                   /**< STAGE: cycles between READY resends */
	uint64_t byte_timeout;                   /**< cycles without a byte: partial frame dropped */
	uint64_t rx_at[PEMESH_PE_RX_LINKS];      /**< pemesh_cycles() of each link's last byte */
#if PEMESH_HOST_EEMBC
	struct pemesh_eembc eembc;               /**< link 0's EEMBC protocol state */
#endif
};

/**
 * @brief Run the PE: init the port, then serve its links forever.
 *
 * Role SINGLE (docs/CONTRACTS.md §1): only the host link. PING -> PONG; TENSOR -> copy
 * into pemesh_model.inputs[stream] at chunk * MAX_PAYLOAD (bounds-checked, chunks in order;
 * chunk 0 restarts an input) and ACK; once every chunk of every input has arrived: run the
 * model (timed with pemesh_cycles()), send every output as TENSOR frames to the host, then
 * one STATS frame. A TENSOR frame whose seq is not newer than the last one accepted from its
 * sender (a retransmission) is re-ACKed and ignored; PING starts afresh. Problems are
 * answered with ERROR frames; bad frames are counted and never deliver data.
 *
 * Role STAGE (docs/CONTRACTS.md §6): links 0 and 1. TENSOR frames for this PE are accepted
 * only in seq order per source (duplicates re-ACKed, gaps dropped) and only from the PE the
 * input's SOURCE route names (others are ACKed, counted and reported to the host); outputs
 * go by the OUTPUT routes, one tensor per READY credit; after a run READY goes back to every
 * input's source. READY carries the number of tensors consumed on that input: a producer
 * takes it as a credit only for the tensor it would send next, and a consumer whose input
 * stays empty sends its READY again every PEMESH_READY_PERIOD_MS (lost READYs heal).
 *
 * @retval -errno only if the port cannot be initialised (otherwise it does not return)
 */
int pemesh_pe_main(void);

/**
 * @brief Set up a PE context (exposed for tests; pemesh_pe_main() calls it).
 * @retval 0 success
 * @retval -EINVAL the model has more inputs/outputs than PEMESH_MAX_TENSORS
 */
int pemesh_pe_init(struct pemesh_pe *pe);

/**
 * @brief Feed bytes received on @p link to the PE and handle every complete frame
 * (exposed for tests; pemesh_pe_main() calls it with what pemesh_link_read() returns).
 * Links >= PEMESH_PE_RX_LINKS are ignored.
 */
void pemesh_pe_feed_link(struct pemesh_pe *pe, uint8_t link, const uint8_t *data, size_t len);

/**
 * @brief Time-driven work (exposed for tests; pemesh_pe_main() calls it on every pass): in
 * role STAGE, an input from another PE that is still empty a READY period after its last
 * READY sends that READY again (the period doubling up to 32x while it stays empty), so a
 * READY lost on the mesh cannot stall the pipeline.
 */
void pemesh_pe_tick(struct pemesh_pe *pe, uint64_t now);

/**
 * @brief After a read of @p link that returned nothing at time @p now (taken before the read):
 * a frame partly received on it whose last byte is PEMESH_BYTE_TIMEOUT_MS old is abandoned
 * (its sender stopped: bytes that came meanwhile would have been read). Any role.
 */
void pemesh_pe_expire(struct pemesh_pe *pe, uint8_t link, uint64_t now);

/** @brief pemesh_pe_feed_link() on the host link (link 0). */
void pemesh_pe_feed(struct pemesh_pe *pe, const uint8_t *data, size_t len);

/**
 * @brief Accelerator counters for STATS. A weak default reports zeros; the accelerator
 * wrappers override it.
 */
void pemesh_pe_accel_counters(uint32_t *calls, uint64_t *macs);

#endif /* PEMESH_PE_H_ */
