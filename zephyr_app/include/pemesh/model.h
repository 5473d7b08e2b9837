/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * The model a PE runs (docs/CONTRACTS.md §2). The generated src/pe_model.c defines
 * `pemesh_model`; the runtime core only reads it.
 */
#ifndef PEMESH_MODEL_H_
#define PEMESH_MODEL_H_

#include <stdint.h>

/** One static, 8-byte aligned input or output buffer of the model. */
struct pemesh_tensor {
	void *data;    /**< the buffer (owned by the generated pe_model.c, static) */
	uint32_t size; /**< its size in bytes */
};

/** A stage's AOT model: io buffers plus the function that runs it on them. */
struct pemesh_model {
	const char *name;                    /**< stage name (tvmgen_<name>_run) */
	uint16_t n_inputs, n_outputs;        /**< number of inputs / outputs */
	const struct pemesh_tensor *inputs;  /**< n_inputs buffers, in TENSOR stream order */
	const struct pemesh_tensor *outputs; /**< n_outputs buffers, in TENSOR stream order */
	/**
	 * Runs tvmgen_<name>_run on the static io buffers.
	 * @retval 0 success
	 * @retval other the model's error code
	 */
	int32_t (*run)(void);
	uint32_t workspace_size; /**< arena bytes, for STATS/reporting */
};

/** The model of this PE (defined by the generated src/pe_model.c). */
extern const struct pemesh_model pemesh_model;

#endif /* PEMESH_MODEL_H_ */
