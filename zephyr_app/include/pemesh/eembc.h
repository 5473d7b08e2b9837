/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * The EEMBC / MLPerf Tiny DUT protocol as the host protocol of link 0 (UART0), chosen with
 * CONFIG_PEMESH_HOST_PROTOCOL_EEMBC (pemesh compile --host-protocol eembc). Text commands
 * end with '%'; every reply ends with the line "m-ready" (docs/CONTRACTS.md §7). The
 * strings follow mlcommons/tiny's runner and reference submissions (api/).
 */
#ifndef PEMESH_EEMBC_H_
#define PEMESH_EEMBC_H_

#include <stddef.h>
#include <stdint.h>

#include <pemesh/config.h>

/** Longest command (without its '%'), as EE_CMD_SIZE of the reference submissions. */
#define PEMESH_EEMBC_CMD_SIZE 80u

/** Element types of a model output, for printing its values in "m-results-[...]". */
enum pemesh_eembc_dtype {
	PEMESH_EEMBC_F32 = 0, /**< float32: printed as it is */
	PEMESH_EEMBC_I8 = 1,  /**< int8: (q - zero_point) * scale */
	PEMESH_EEMBC_U8 = 2,  /**< uint8: (q - zero_point) * scale */
	PEMESH_EEMBC_I16 = 3, /**< int16: (q - zero_point) * scale */
	PEMESH_EEMBC_I32 = 4, /**< int32: (q - zero_point) * scale */
};

/** How one model output is printed. */
struct pemesh_eembc_output {
	uint8_t dtype;      /**< enum pemesh_eembc_dtype */
	uint32_t count;     /**< elements */
	float scale;        /**< dequantization scale of an integer output (1 when unknown) */
	int32_t zero_point; /**< dequantization zero point of an integer output */
};

struct pemesh_tensor;

/** What the generated src/pe_eembc.c tells the protocol about the model. */
struct pemesh_eembc_model {
	const char *name;  /**< printed by "name" (m-name-dut-[...]) and "profile" (m-model-[...]) */
	uint16_t n_outputs; /**< outputs printed in m-results-[...] */
	const struct pemesh_eembc_output *outputs; /**< how each is printed */
	/**
	 * NULL: the model runs on this PE alone and the results are pemesh_model's outputs.
	 * Otherwise this PE is the entry of a mesh pipeline (docs/CONTRACTS.md §7): buffers for
	 * the *model's* outputs, which the exit PEs send here as TENSOR frames with stream
	 * PEMESH_EEMBC_RESULT_STREAM | j (or this PE's own routes to the host fill).
	 */
	const struct pemesh_tensor *results;
};

/** TENSOR stream bit of a model result sent to the EEMBC entry PE (low bits: output index). */
#define PEMESH_EEMBC_RESULT_STREAM 0x8000u
/** Seconds the entry PE waits for the mesh's results of one inference. */
#define PEMESH_EEMBC_MESH_TIMEOUT_S 60u

/** Defined by the generated src/pe_eembc.c of an app built for the EEMBC protocol. */
extern const struct pemesh_eembc_model pemesh_eembc_model;

/** Protocol state (a member of struct pemesh_pe: no other globals). */
struct pemesh_eembc {
	char cmd[PEMESH_EEMBC_CMD_SIZE + 1u]; /**< the command being received */
	uint16_t cmd_len;                     /**< characters in cmd */
	uint8_t cmd_overflow;                 /**< the command was longer than the buffer */
	uint8_t have_results;                 /**< the outputs hold the results of an "infer" */
	uint32_t db_size;                     /**< bytes announced by "db load N" */
	uint32_t db_pos;                      /**< bytes received since */
	char line[160];                       /**< text being sent */
	uint16_t line_len;                    /**< characters in line */
	uint16_t res_next[PEMESH_MAX_TENSORS]; /**< mesh: chunks of each result received */
	uint16_t res_src[PEMESH_MAX_TENSORS];  /**< mesh: the PE that sent each result */
	uint8_t res_done[PEMESH_MAX_TENSORS];  /**< mesh: result j is complete */
};

struct pemesh_pe;

/** @brief Print the start-up lines ("m-init-done", "m-ready") on link 0. */
void pemesh_eembc_start(struct pemesh_pe *pe);

/** @brief Feed characters received on link 0; each '%' runs a command. */
void pemesh_eembc_feed(struct pemesh_pe *pe, const uint8_t *data, size_t len);

/**
 * @brief Format @p v with @p decimals digits after the point (like "%.3f", rounding half
 * away from zero; "nan", "inf", "-inf" for those values) into @p buf.
 * @return characters written (@p buf is NUL-terminated; @p cap >= 32 is always enough).
 */
size_t pemesh_eembc_format_float(char *buf, size_t cap, float v, unsigned decimals);

#endif /* PEMESH_EEMBC_H_ */
