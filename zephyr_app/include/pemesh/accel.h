/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * The ML accelerator driver contract: the pemesh_accel_* C wrappers that AOT-generated code
 * calls for int8 conv2d / depthwise conv2d / dense steps offloaded to a PE's 4x16 MAC array
 * (generator/aot/accel.py decides and emits the calls; see docs there).
 *
 * What one call computes, for every output element (o = output channel / column):
 *
 *   acc   = bias[o] + sum_k (in[k] - input_zero_point) * weights[o][k]      int8 x int8 -> int32
 *   v     = MultiplyByQuantizedMultiplier(acc, multiplier[o], shift[o])     TFLite's, see below
 *   out   = clamp(v + output_zero_point, act_min, act_max)                 -> int8
 *
 * i.e. requantization exactly as TFLite Micro does it: x = acc * 2^max(shift, 0) (int32),
 * h = SaturatingRoundingDoublingHighMul(x, multiplier) (the high 32 bits of 2*x*multiplier,
 * rounded half away from zero), v = RoundingDivideByPOT(h, max(-shift, 0)) (half away from
 * zero); then a clamp that also applies a fused ReLU / ReLU6 / Clip. This is bit-exactly what
 * the TVM code of the same step (generator/frontend/qops.py) computes.
 *
 * Buffers:
 *  - activations: int8, NCHW (conv) or [rows][in_features] (dense), the graph's layout; the
 *    array's input stage gathers the im2col column, so activations need no re-layout;
 *  - weights: int8, [out_padded][k_padded], K in OHWI order: k = (ky * kernel_w + kx) * cin_g + ci
 *    (cin_g = input channels per group: in_c for conv2d, 1 for depthwise); out_padded is a
 *    multiple of 16 (the array's columns), k_padded a multiple of 4 (its rows); the padding is 0;
 *    4-byte aligned (PEMESH_ACCEL_ALIGN);
 *  - bias / multiplier: int32 [out_padded] (multiplier Q31, TFLite's QuantizeMultiplier);
 *    shift: int8 [out_padded], TFLite's exponent -31..30 (> 0 a left shift, < 0 a right shift).
 *  All parameter arrays are compile-time constants (flash); the wrapper never writes them.
 *
 * Depthwise: column j of the array serves channel (tile * 16 + j) with its own input; K runs
 * over the kernel window only.
 *
 * Return codes: 0 success; -EINVAL a NULL pointer, a zero or inconsistent dimension, a bad
 * shift; -EFAULT a weight buffer that is not PEMESH_ACCEL_ALIGN-aligned; -ENOSYS the selected
 * driver cannot run the op (CONFIG_PEMESH_ACCEL_DRIVER without a hardware backend).
 *
 * Backends: by default (CONFIG_PEMESH_ACCEL_SW, or nothing set) src/accel_sw.c computes the
 * array's result in portable C; with CONFIG_PEMESH_ACCEL_DRIVER the calls go to
 * pemesh_accel_hw_conv2d()/pemesh_accel_hw_dense() (src/accel_hw_stub.c: the place for a real
 * driver). Counters of calls and MACs per op kind count every successful call either way and
 * feed the STATS frame through pemesh_pe_accel_counters().
 */
#ifndef PEMESH_ACCEL_H_
#define PEMESH_ACCEL_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PEMESH_ACCEL_ROWS 4u    /**< MAC array rows: K elements consumed per cycle */
#define PEMESH_ACCEL_COLS 16u   /**< MAC array columns: output channels per cycle */
#define PEMESH_ACCEL_ALIGN 4u   /**< byte alignment of the weight buffer */

/** Op kinds, the index of the per-kind counters. */
enum pemesh_accel_kind {
	PEMESH_ACCEL_CONV2D = 0,
	PEMESH_ACCEL_DEPTHWISE_CONV2D = 1,
	PEMESH_ACCEL_DENSE = 2,
	PEMESH_ACCEL_N_KINDS = 3,
};

/** Requantization and clamp, shared by every op. */
struct pemesh_accel_requant {
	int32_t input_zero_point;   /**< subtracted from every activation */
	int32_t output_zero_point;  /**< added after the shift */
	int32_t act_min, act_max;   /**< clamp (int8 range, narrowed by a fused ReLU/Clip) */
	const int32_t *bias;        /**< [out_padded], in accumulator units */
	const int32_t *multiplier;  /**< [out_padded], Q31 */
	const int8_t *shift;        /**< [out_padded], TFLite exponent -31..30 (<0: right shift) */
	int32_t rounding;           /**< 0: TFLite's (above); 1: ONNX models' one rounding, ties
	                             *   up: v = (acc * multiplier + 2^(30-shift)) >> (31-shift) */
};

/** A conv2d (groups == 1) or depthwise conv2d (groups == in_c == out_c), NCHW, int8. */
struct pemesh_accel_conv2d_params {
	uint16_t batch, in_c, in_h, in_w;
	uint16_t out_c, out_h, out_w;
	uint8_t kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w;
	uint8_t pad_top, pad_left;  /**< bottom/right padding follow from the output size */
	uint8_t depthwise;          /**< 0: conv2d; 1: depthwise (cin_g = 1) */
	uint8_t reserved;
	uint16_t k_padded;          /**< kernel_h * kernel_w * cin_g rounded up to 4 */
	uint16_t out_padded;        /**< out_c rounded up to 16 */
	const int8_t *weights;      /**< [out_padded][k_padded], see above */
	struct pemesh_accel_requant rq;
};

/** A dense layer / matmul by a constant: out[rows][out_features] = in[rows][in_features] x W^T. */
struct pemesh_accel_dense_params {
	uint32_t rows;
	uint16_t in_features, out_features;
	uint16_t k_padded;          /**< in_features rounded up to 4 */
	uint16_t out_padded;        /**< out_features rounded up to 16 */
	const int8_t *weights;      /**< [out_padded][k_padded] */
	struct pemesh_accel_requant rq;
};

/** Counters since boot (or the last reset): per kind, successful calls and real MACs. */
struct pemesh_accel_counters {
	uint32_t calls[PEMESH_ACCEL_N_KINDS];
	uint64_t macs[PEMESH_ACCEL_N_KINDS];
	uint32_t errors;            /**< calls that returned an error */
};

/**
 * @brief Run a conv2d or depthwise conv2d step.
 * @param p   the step's constant parameters
 * @param in  int8 NCHW input [batch][in_c][in_h][in_w]
 * @param out int8 NCHW output [batch][out_c][out_h][out_w]
 * @return 0, -EINVAL, -EFAULT or -ENOSYS (see above)
 */
int pemesh_accel_conv2d(const struct pemesh_accel_conv2d_params *p, const int8_t *in,
			int8_t *out);

/**
 * @brief Run a dense / matmul-by-constant step.
 * @param p   the step's constant parameters
 * @param in  int8 input [rows][in_features]
 * @param out int8 output [rows][out_features]
 * @return 0, -EINVAL, -EFAULT or -ENOSYS (see above)
 */
int pemesh_accel_dense(const struct pemesh_accel_dense_params *p, const int8_t *in,
		       int8_t *out);

/** @brief Copy the counters. */
void pemesh_accel_get_counters(struct pemesh_accel_counters *c);

/** @brief Zero the counters. */
void pemesh_accel_reset_counters(void);

/** Hardware backend hooks (CONFIG_PEMESH_ACCEL_DRIVER): called after validation. */
int pemesh_accel_hw_conv2d(const struct pemesh_accel_conv2d_params *p, const int8_t *in,
			   int8_t *out);
int pemesh_accel_hw_dense(const struct pemesh_accel_dense_params *p, const int8_t *in,
			  int8_t *out);

#ifdef __cplusplus
}
#endif

#endif /* PEMESH_ACCEL_H_ */
