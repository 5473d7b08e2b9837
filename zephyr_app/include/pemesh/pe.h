/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * The PE main loop (docs/CONTRACTS.md §1, "One inference on the host link").
 */
#ifndef PEMESH_PE_H_
#define PEMESH_PE_H_

#include <stdint.h>

#include <pemesh/config.h>
#include <pemesh/frame.h>

/** Reassembly state of one model input. */
struct pemesh_pe_input {
	uint16_t next_chunk; /**< chunks 0..next_chunk-1 have arrived (in order) */
	uint16_t nchunks;    /**< chunks this input takes: max(1, ceil(size / MAX_PAYLOAD)) */
};

/**
 * The PE context: all the runtime's mutable state (there are no other globals in the
 * core; ports keep their own hardware state). pemesh_pe_main() owns one, statically.
 */
struct pemesh_pe {
	struct pemesh_decoder rx;                /**< host-link decoder */
	uint8_t rx_chunk[64];                    /**< bytes read from the port per pass */
	uint8_t tx[PEMESH_MAX_FRAME];            /**< frame being sent */
	uint8_t payload[PEMESH_MAX_PAYLOAD];     /**< payload being built (PONG, STATS, ERROR) */
	int32_t init_status;                     /**< 0, or why this PE cannot run the model */
	const char *init_error;                  /**< message for a non-zero init_status */
	uint16_t pe_id;                          /**< from pemesh_pe_config */
	uint16_t tx_seq;                         /**< next seq on the host link */
	uint16_t rx_window;                      /**< TENSOR frames the host may have in flight */
	struct pemesh_pe_input in[PEMESH_MAX_TENSORS]; /**< reassembly per input */
	uint32_t inferences;                     /**< completed model runs */
	uint64_t last_cycles;                    /**< cycles of the last run */
	int32_t run_status;                      /**< status of the last run */
	uint32_t tx_frames;                      /**< frames sent */
	uint32_t dropped_frames;                 /**< good frames not for this PE or unknown */
};

/**
 * @brief Run the PE: init the port, then serve the host link forever.
 *
 * PING -> PONG; TENSOR -> copy into pemesh_model.inputs[stream] at chunk * MAX_PAYLOAD
 * (bounds-checked, chunks in order; chunk 0 restarts an input) and ACK; once every chunk
 * of every input has arrived: run the model (timed with pemesh_cycles()), send every output
 * as TENSOR frames to the host, then one STATS frame. Problems are answered with ERROR
 * frames; bad frames are counted and never deliver data.
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
 * @brief Feed received host-link bytes to the PE and handle every complete frame
 * (exposed for tests; pemesh_pe_main() calls it with what pemesh_link_read() returns).
 */
void pemesh_pe_feed(struct pemesh_pe *pe, const uint8_t *data, size_t len);

/**
 * @brief Accelerator counters for STATS. A weak default reports zeros; the accelerator
 * wrappers override it.
 */
void pemesh_pe_accel_counters(uint32_t *calls, uint64_t *macs);

#endif /* PEMESH_PE_H_ */
