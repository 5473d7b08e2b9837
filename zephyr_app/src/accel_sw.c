/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * The pemesh_accel_* wrappers (include/pemesh/accel.h): validation, counters, and the
 * portable software model of the 4x16 int8 MAC array (the default backend; with
 * CONFIG_PEMESH_ACCEL_DRIVER the work goes to pemesh_accel_hw_*() in accel_hw_stub.c).
 *
 * The software model walks the array's schedule: per output pixel, per tile of 16 output
 * channels (the columns), K in steps of 4 (the rows), int32 accumulators, then the fused
 * bias / requantize / clamp epilogue. Signed right shifts of int64 are arithmetic on gcc and
 * arm-none-eabi-gcc (the only compilers pemesh uses).
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include <pemesh/accel.h>
#include <pemesh/pe.h>

static struct pemesh_accel_counters pemesh_accel_ctr;

void pemesh_accel_get_counters(struct pemesh_accel_counters *c)
{
	*c = pemesh_accel_ctr;
}

void pemesh_accel_reset_counters(void)
{
	struct pemesh_accel_counters zero = {{0u}, {0u}, 0u};

	pemesh_accel_ctr = zero;
}

/* Overrides the runtime's weak default: totals over every op kind, for STATS. */
void pemesh_pe_accel_counters(uint32_t *calls, uint64_t *macs)
{
	uint32_t c = 0u;
	uint64_t m = 0u;

	for (unsigned int k = 0u; k < (unsigned int)PEMESH_ACCEL_N_KINDS; k++) {
		c += pemesh_accel_ctr.calls[k];
		m += pemesh_accel_ctr.macs[k];
	}
	*calls = c;
	*macs = m;
}

static int pemesh_accel_check_rq(const struct pemesh_accel_requant *rq, uint16_t n_out)
{
	if (rq->bias == NULL || rq->multiplier == NULL || rq->shift == NULL ||
	    rq->act_min > rq->act_max || rq->act_min < -128 || rq->act_max > 127 ||
	    rq->rounding < 0 || rq->rounding > 1) {
		return -EINVAL;
	}
	for (uint16_t o = 0u; o < n_out; o++) {
		if (rq->shift[o] < -31 || rq->shift[o] > 30) {
			return -EINVAL;
		}
	}
	return 0;
}

static int pemesh_accel_check_w(const int8_t *w, uint16_t k, uint16_t k_padded, uint16_t n,
				uint16_t n_padded)
{
	if (w == NULL || k == 0u || n == 0u || k_padded < k || n_padded < n ||
	    (k_padded % PEMESH_ACCEL_ROWS) != 0u || (n_padded % PEMESH_ACCEL_COLS) != 0u) {
		return -EINVAL;
	}
	if (((uintptr_t)w % PEMESH_ACCEL_ALIGN) != 0u) {
		return -EFAULT;
	}
	return 0;
}

#if !defined(CONFIG_PEMESH_ACCEL_DRIVER)

/* TFLite's SaturatingRoundingDoublingHighMul: (a * b * 2 + 2^31 rounding) >> 32, the rounding
 * half away from zero, the division truncating (as in C). */
static int32_t pemesh_accel_srdhm(int32_t a, int32_t b)
{
	if (a == INT32_MIN && b == INT32_MIN) {
		return INT32_MAX;
	}
	int64_t ab = (int64_t)a * (int64_t)b;
	int64_t nudge = ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));

	return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

/* TFLite's RoundingDivideByPOT: x / 2^e rounded half away from zero (0 <= e <= 31). */
static int32_t pemesh_accel_rdbpot(int32_t x, int32_t e)
{
	int64_t mask = ((int64_t)1 << e) - 1;
	int64_t rem = (int64_t)x & mask;
	int64_t thr = (mask >> 1) + (x < 0 ? 1 : 0);

	return (int32_t)(((int64_t)x >> e) + (rem > thr ? 1 : 0));
}

static int8_t pemesh_accel_requant(const struct pemesh_accel_requant *rq, uint32_t o, int32_t acc)
{
	int32_t sh = rq->shift[o];
	int64_t v;

	if (rq->rounding == 1) {
		int32_t r = 31 - sh;   /* 1..62 */

		v = ((int64_t)acc * (int64_t)rq->multiplier[o] + ((int64_t)1 << (r - 1))) >> r;
	} else {
		int32_t left = sh > 0 ? sh : 0;
		int32_t right = sh > 0 ? 0 : -sh;
		int32_t x = (int32_t)((uint32_t)acc << left);   /* TFLite: acc * (1 << left), wraps */

		v = pemesh_accel_rdbpot(pemesh_accel_srdhm(x, rq->multiplier[o]), right);
	}

	v += rq->output_zero_point;
	if (v < rq->act_min) {
		v = rq->act_min;
	}
	if (v > rq->act_max) {
		v = rq->act_max;
	}
	return (int8_t)v;
}

/* One activation of the im2col column: in - zero point, or 0 in the padding / past K. */
static int32_t pemesh_accel_tap(const struct pemesh_accel_conv2d_params *p, const int8_t *in,
				uint32_t n, uint32_t c, uint32_t oy, uint32_t ox, uint32_t ky,
				uint32_t kx)
{
	int32_t iy = (int32_t)(oy * p->stride_h + ky * p->dilation_h) - (int32_t)p->pad_top;
	int32_t ix = (int32_t)(ox * p->stride_w + kx * p->dilation_w) - (int32_t)p->pad_left;

	if (iy < 0 || ix < 0 || iy >= (int32_t)p->in_h || ix >= (int32_t)p->in_w) {
		return 0;
	}
	return (int32_t)in[((n * p->in_c + c) * p->in_h + (uint32_t)iy) * p->in_w + (uint32_t)ix] -
	       p->rq.input_zero_point;
}

static int pemesh_accel_sw_conv2d(const struct pemesh_accel_conv2d_params *p, const int8_t *in,
				  int8_t *out)
{
	const uint32_t cin_g = p->depthwise ? 1u : p->in_c;
	const uint32_t k_real = (uint32_t)p->kernel_h * p->kernel_w * cin_g;

	for (uint32_t n = 0u; n < p->batch; n++) {
		for (uint32_t oy = 0u; oy < p->out_h; oy++) {
			for (uint32_t ox = 0u; ox < p->out_w; ox++) {
				for (uint32_t t = 0u; t < p->out_padded; t += PEMESH_ACCEL_COLS) {
					int32_t acc[PEMESH_ACCEL_COLS];

					for (uint32_t j = 0u; j < PEMESH_ACCEL_COLS; j++) {
						acc[j] = p->rq.bias[t + j];
					}
					for (uint32_t k0 = 0u; k0 < p->k_padded; k0 += PEMESH_ACCEL_ROWS) {
						for (uint32_t r = 0u; r < PEMESH_ACCEL_ROWS; r++) {
							uint32_t k = k0 + r;

							if (k >= k_real) {
								continue; /* padded rows: weights are 0 */
							}
							uint32_t ci = k % cin_g;
							uint32_t kx = (k / cin_g) % p->kernel_w;
							uint32_t ky = k / (cin_g * p->kernel_w);

							for (uint32_t j = 0u; j < PEMESH_ACCEL_COLS; j++) {
								uint32_t o = t + j;
								uint32_t c = p->depthwise ? o : ci;
								int32_t a;

								if (o >= p->out_c) {
									break;
								}
								a = pemesh_accel_tap(p, in, n, c, oy, ox, ky, kx);
								acc[j] += a * (int32_t)p->weights[o * p->k_padded + k];
							}
						}
					}
					for (uint32_t j = 0u; j < PEMESH_ACCEL_COLS && t + j < p->out_c; j++) {
						uint32_t o = t + j;

						out[((n * p->out_c + o) * p->out_h + oy) * p->out_w + ox] =
							pemesh_accel_requant(&p->rq, o, acc[j]);
					}
				}
			}
		}
	}
	return 0;
}

static int pemesh_accel_sw_dense(const struct pemesh_accel_dense_params *p, const int8_t *in,
				 int8_t *out)
{
	for (uint32_t m = 0u; m < p->rows; m++) {
		const int8_t *x = in + (size_t)m * p->in_features;

		for (uint32_t t = 0u; t < p->out_padded; t += PEMESH_ACCEL_COLS) {
			int32_t acc[PEMESH_ACCEL_COLS];

			for (uint32_t j = 0u; j < PEMESH_ACCEL_COLS; j++) {
				acc[j] = p->rq.bias[t + j];
			}
			for (uint32_t k0 = 0u; k0 < p->k_padded; k0 += PEMESH_ACCEL_ROWS) {
				for (uint32_t r = 0u; r < PEMESH_ACCEL_ROWS; r++) {
					uint32_t k = k0 + r;
					int32_t a;

					if (k >= p->in_features) {
						continue;
					}
					a = (int32_t)x[k] - p->rq.input_zero_point;
					for (uint32_t j = 0u; j < PEMESH_ACCEL_COLS; j++) {
						acc[j] += a * (int32_t)p->weights[(t + j) * p->k_padded + k];
					}
				}
			}
			for (uint32_t j = 0u; j < PEMESH_ACCEL_COLS && t + j < p->out_features; j++) {
				out[(size_t)m * p->out_features + t + j] =
					pemesh_accel_requant(&p->rq, t + j, acc[j]);
			}
		}
	}
	return 0;
}

#endif /* !CONFIG_PEMESH_ACCEL_DRIVER */

static int pemesh_accel_done(int rc, enum pemesh_accel_kind kind, uint64_t macs)
{
	if (rc == 0) {
		pemesh_accel_ctr.calls[kind]++;
		pemesh_accel_ctr.macs[kind] += macs;
	} else {
		pemesh_accel_ctr.errors++;
	}
	return rc;
}

int pemesh_accel_conv2d(const struct pemesh_accel_conv2d_params *p, const int8_t *in,
			int8_t *out)
{
	enum pemesh_accel_kind kind;
	uint32_t cin_g;
	int rc;

	if (p == NULL || in == NULL || out == NULL || p->batch == 0u || p->in_c == 0u ||
	    p->in_h == 0u || p->in_w == 0u || p->out_h == 0u || p->out_w == 0u ||
	    p->kernel_h == 0u || p->kernel_w == 0u || p->stride_h == 0u || p->stride_w == 0u ||
	    p->dilation_h == 0u || p->dilation_w == 0u ||
	    (p->depthwise && p->in_c != p->out_c)) {
		return pemesh_accel_done(-EINVAL, PEMESH_ACCEL_CONV2D, 0u);
	}
	kind = p->depthwise ? PEMESH_ACCEL_DEPTHWISE_CONV2D : PEMESH_ACCEL_CONV2D;
	cin_g = p->depthwise ? 1u : p->in_c;
	rc = pemesh_accel_check_w(p->weights, (uint16_t)(p->kernel_h * p->kernel_w * cin_g),
				  p->k_padded, p->out_c, p->out_padded);
	if (rc == 0) {
		rc = pemesh_accel_check_rq(&p->rq, p->out_c);
	}
	if (rc != 0) {
		return pemesh_accel_done(rc, kind, 0u);
	}
#if defined(CONFIG_PEMESH_ACCEL_DRIVER)
	rc = pemesh_accel_hw_conv2d(p, in, out);
#else
	rc = pemesh_accel_sw_conv2d(p, in, out);
#endif
	return pemesh_accel_done(rc, kind,
				 (uint64_t)p->batch * p->out_c * p->out_h * p->out_w *
					 p->kernel_h * p->kernel_w * cin_g);
}

int pemesh_accel_dense(const struct pemesh_accel_dense_params *p, const int8_t *in,
		       int8_t *out)
{
	int rc;

	if (p == NULL || in == NULL || out == NULL || p->rows == 0u) {
		return pemesh_accel_done(-EINVAL, PEMESH_ACCEL_DENSE, 0u);
	}
	rc = pemesh_accel_check_w(p->weights, p->in_features, p->k_padded, p->out_features,
				  p->out_padded);
	if (rc == 0) {
		rc = pemesh_accel_check_rq(&p->rq, p->out_features);
	}
	if (rc != 0) {
		return pemesh_accel_done(rc, PEMESH_ACCEL_DENSE, 0u);
	}
#if defined(CONFIG_PEMESH_ACCEL_DRIVER)
	rc = pemesh_accel_hw_dense(p, in, out);
#else
	rc = pemesh_accel_sw_dense(p, in, out);
#endif
	return pemesh_accel_done(rc, PEMESH_ACCEL_DENSE,
				 (uint64_t)p->rows * p->in_features * p->out_features);
}
