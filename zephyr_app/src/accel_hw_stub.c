/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * The hardware driver hook of the pemesh_accel_* wrappers (include/pemesh/accel.h), used when
 * CONFIG_PEMESH_ACCEL_DRIVER is set. A real driver programs the MAC array here: DMA the im2col
 * column and the [out_padded][k_padded] weights, load bias/multiplier/shift, start, wait.
 * This stub has no hardware to drive and reports -ENOSYS, so a misconfigured build fails
 * loudly (the model run returns the error) instead of computing garbage.
 */
#include <errno.h>
#include <stdint.h>

#include <pemesh/accel.h>

#if defined(CONFIG_PEMESH_ACCEL_DRIVER)

int pemesh_accel_hw_conv2d(const struct pemesh_accel_conv2d_params *p, const int8_t *in,
			   int8_t *out)
{
	(void)p;
	(void)in;
	(void)out;
	return -ENOSYS;
}

int pemesh_accel_hw_dense(const struct pemesh_accel_dense_params *p, const int8_t *in,
			  int8_t *out)
{
	(void)p;
	(void)in;
	(void)out;
	return -ENOSYS;
}

#else

/* The software backend (accel_sw.c) is selected: nothing to drive. */
typedef int pemesh_accel_hw_stub_unused;

#endif /* CONFIG_PEMESH_ACCEL_DRIVER */
