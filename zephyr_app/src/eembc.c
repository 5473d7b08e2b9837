/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * The EEMBC / MLPerf Tiny DUT protocol on link 0 (docs/CONTRACTS.md §7), for role SINGLE.
 * Written from mlcommons/tiny benchmark/runner (device_under_test.py, serial_device.py) and
 * the reference submissions' api/ (the message strings): commands end with '%', words are
 * separated by spaces, every reply ends with "m-ready". "db" bytes go straight into the
 * model's input buffers (the inputs' raw bytes, concatenated in input order): no extra
 * buffer, no malloc. Compiled to nothing unless CONFIG_PEMESH_HOST_PROTOCOL_EEMBC.
 */
#include <pemesh/config.h>

#if PEMESH_HOST_EEMBC

#include <errno.h>
#include <string.h>

#include <pemesh/eembc.h>
#include <pemesh/model.h>
#include <pemesh/pe.h>
#include <pemesh/port.h>

#include "pe_internal.h"

#define PEMESH_EEMBC_FW_VERSION "ULPMark for tinyML Firmware V0.0.1"

static const char *const pemesh_eembc_help[] = {
	PEMESH_EEMBC_FW_VERSION,
	"",
	"help         : Print this information",
	"name         : Print the name of the device",
	"timestsamp   : Generate a timetsamp",
	"db SUBCMD    : Manipulate a generic byte buffer",
	"  load N     : Allocate N bytes and set load counter",
	"  db HH[HH]* : Load 8-bit hex byte(s) until N bytes",
	"  print [N=16] [offset=0]",
	"             : Print N bytes at offset as hex",
	"infer N [W=0]: Load input, execute N inferences after W warmup loops",
	"results      : Return the result fp32 vector",
};

/* --- output --------------------------------------------------------------------------- */

static void pemesh_eembc_flush(struct pemesh_eembc *e)
{
	if (e->line_len > 0u) {
		(void)pemesh_link_write(PEMESH_LINK_HOST, (const uint8_t *)e->line, e->line_len);
		e->line_len = 0u;
	}
}

static void pemesh_eembc_put(struct pemesh_eembc *e, const char *s)
{
	while (*s != '\0') {
		if (e->line_len == sizeof(e->line)) {
			pemesh_eembc_flush(e);
		}
		e->line[e->line_len++] = *s++;
	}
}

static void pemesh_eembc_put_u32(struct pemesh_eembc *e, uint32_t v)
{
	char digits[11];
	size_t n = sizeof(digits) - 1u;

	digits[n] = '\0';
	do {
		digits[--n] = (char)('0' + v % 10u);
		v /= 10u;
	} while (v != 0u);
	pemesh_eembc_put(e, &digits[n]);
}

/* One whole line: s1 s2 s3 "\r\n" */
static void pemesh_eembc_line3(struct pemesh_eembc *e, const char *s1, const char *s2,
			       const char *s3)
{
	pemesh_eembc_put(e, s1);
	pemesh_eembc_put(e, s2);
	pemesh_eembc_put(e, s3);
	pemesh_eembc_put(e, "\r\n");
	pemesh_eembc_flush(e);
}

static void pemesh_eembc_line(struct pemesh_eembc *e, const char *s1, const char *s2)
{
	pemesh_eembc_line3(e, s1, s2, "");
}

size_t pemesh_eembc_format_float(char *buf, size_t cap, float v, unsigned decimals)
{
	char tmp[48];
	size_t n = 0u, out = 0u;
	uint64_t scale = 1u, q, ip, fp;
	double d = (double)v;
	int neg = 0;

	if (cap == 0u) {
		return 0u;
	}
	if (decimals > 9u) {
		decimals = 9u;
	}
	if (d != d) {
		tmp[n++] = 'n';
		tmp[n++] = 'a';
		tmp[n++] = 'n';
	} else {
		if (d < 0.0) {
			neg = 1;
			d = -d;
		}
		for (unsigned i = 0; i < decimals; i++) {
			scale *= 10u;
		}
		if (d * (double)scale >= 1.8e19) { /* inf, or too large for a u64 */
			tmp[n++] = 'f';
			tmp[n++] = 'n';
			tmp[n++] = 'i';
		} else {
			q = (uint64_t)(d * (double)scale + 0.5);
			ip = q / scale;
			fp = q % scale;
			for (unsigned i = 0; i < decimals; i++) {
				tmp[n++] = (char)('0' + fp % 10u);
				fp /= 10u;
			}
			if (decimals > 0u) {
				tmp[n++] = '.';
			}
			do {
				tmp[n++] = (char)('0' + ip % 10u);
				ip /= 10u;
			} while (ip != 0u);
		}
		if (neg) {
			tmp[n++] = '-';
		}
		/* tmp holds the text reversed (except "nan", written forwards above) */
		for (size_t i = 0; i < n / 2u; i++) {
			char c = tmp[i];

			tmp[i] = tmp[n - 1u - i];
			tmp[n - 1u - i] = c;
		}
	}
	while (out < n && out + 1u < cap) {
		buf[out] = tmp[out];
		out++;
	}
	buf[out] = '\0';
	return out;
}

/* Element k of output o, dequantized. */
static float pemesh_eembc_value(const struct pemesh_eembc_output *d, const void *data, uint32_t k)
{
	int32_t q;

	switch (d->dtype) {
	case PEMESH_EEMBC_F32: {
		float f;

		memcpy(&f, (const uint8_t *)data + 4u * k, sizeof(f));
		return f;
	}
	case PEMESH_EEMBC_I8:
		q = ((const int8_t *)data)[k];
		break;
	case PEMESH_EEMBC_U8:
		q = ((const uint8_t *)data)[k];
		break;
	case PEMESH_EEMBC_I16: {
		int16_t s;

		memcpy(&s, (const uint8_t *)data + 2u * k, sizeof(s));
		q = s;
		break;
	}
	default: {
		memcpy(&q, (const uint8_t *)data + 4u * k, sizeof(q));
		break;
	}
	}
	return (float)(q - d->zero_point) * d->scale;
}

/* The bytes of result o: this PE's output, or (mesh entry) the result buffer. */
static const void *pemesh_eembc_result_data(uint16_t o)
{
	return pemesh_eembc_model.results != NULL ? pemesh_eembc_model.results[o].data
						  : pemesh_model.outputs[o].data;
}

/* "m-results-[v0,v1,...]": every output's elements, in output order. */
static void pemesh_eembc_results(struct pemesh_eembc *e)
{
	const struct pemesh_eembc_model *em = &pemesh_eembc_model;
	char num[48];
	int first = 1;

	pemesh_eembc_put(e, "m-results-[");
	for (uint16_t o = 0; o < em->n_outputs; o++) {
		const struct pemesh_eembc_output *d = &em->outputs[o];

		if (em->results == NULL && o >= pemesh_model.n_outputs) {
			break;
		}
		for (uint32_t k = 0; k < d->count; k++) {
			float v = pemesh_eembc_value(d, pemesh_eembc_result_data(o), k);

			(void)pemesh_eembc_format_float(num, sizeof(num), v,
							CONFIG_PEMESH_EEMBC_DECIMALS);
			if (!first) {
				pemesh_eembc_put(e, ",");
			}
			first = 0;
			pemesh_eembc_put(e, num);
		}
	}
	pemesh_eembc_line(e, "]", "");
}

uint64_t pemesh_eembc_cycles_per_second(void)
{
	uint64_t cps = pemesh_cycles_per_second();

	return cps != 0u ? cps : PEMESH_CYCLES_PER_SEC;
}

static void pemesh_eembc_timestamp(struct pemesh_eembc *e)
{
	const uint64_t cps = pemesh_eembc_cycles_per_second();
	uint64_t c = pemesh_cycles();
	/* whole seconds and the rest apart: exact for 12.5 MHz, no overflow for years */
	uint64_t us = (c / cps) * 1000000u + ((c % cps) * 1000000u) / cps;

	pemesh_eembc_put(e, "m-lap-us-");
	pemesh_eembc_put_u32(e, (uint32_t)us);
	pemesh_eembc_line(e, "", "");
}

/* --- parsing -------------------------------------------------------------------------- */

/* Next space-separated word of *s (NUL-terminated in place), or NULL. */
static char *pemesh_eembc_word(char **s)
{
	char *p = *s, *w;

	while (*p == ' ') {
		p++;
	}
	if (*p == '\0') {
		*s = p;
		return NULL;
	}
	w = p;
	while (*p != '\0' && *p != ' ') {
		p++;
	}
	if (*p == ' ') {
		*p++ = '\0';
	}
	*s = p;
	return w;
}

/* Decimal u32 (digits only); -1 when w is not one. */
static int64_t pemesh_eembc_number(const char *w)
{
	int64_t v = 0;

	if (w == NULL || *w == '\0') {
		return -1;
	}
	for (; *w != '\0'; w++) {
		if (*w < '0' || *w > '9' || v > 0xFFFFFFFFLL / 10) {
			return -1;
		}
		v = v * 10 + (*w - '0');
	}
	return v <= 0xFFFFFFFFLL ? v : -1;
}

static int pemesh_eembc_hexdigit(char c)
{
	if (c >= '0' && c <= '9') {
		return c - '0';
	}
	if (c >= 'a' && c <= 'f') {
		return c - 'a' + 10;
	}
	if (c >= 'A' && c <= 'F') {
		return c - 'A' + 10;
	}
	return -1;
}

static uint32_t pemesh_eembc_input_bytes(void)
{
	uint32_t total = 0u;

	for (uint16_t i = 0; i < pemesh_model.n_inputs; i++) {
		total += pemesh_model.inputs[i].size;
	}
	return total;
}

/* Byte `pos` of the inputs, concatenated in input order. */
static uint8_t *pemesh_eembc_input_byte(uint32_t pos)
{
	for (uint16_t i = 0; i < pemesh_model.n_inputs; i++) {
		if (pos < pemesh_model.inputs[i].size) {
			return (uint8_t *)pemesh_model.inputs[i].data + pos;
		}
		pos -= pemesh_model.inputs[i].size;
	}
	return NULL;
}

static void pemesh_eembc_db(struct pemesh_pe *pe, char *rest)
{
	struct pemesh_eembc *e = &pe->eembc;
	char *sub = pemesh_eembc_word(&rest);

	if (sub == NULL) {
		pemesh_eembc_line(e, "e-[Command 'db' requires a subcommand]", "");
	} else if (strcmp(sub, "load") == 0) {
		int64_t n = pemesh_eembc_number(pemesh_eembc_word(&rest));
		uint32_t want = pemesh_eembc_input_bytes();

		if (n < 0) {
			pemesh_eembc_line(e, "e-[Command 'db load' requires the # of bytes]", "");
		} else if (n == 0) {
			pemesh_eembc_line(e, "e-[Command 'db load' must be >0 bytes]", "");
		} else if ((uint64_t)n != want) {
			pemesh_eembc_put(e, "e-[db load: the model's inputs take ");
			pemesh_eembc_put_u32(e, want);
			pemesh_eembc_line(e, " bytes]", "");
		} else {
			e->db_size = (uint32_t)n;
			e->db_pos = 0u;
			e->have_results = 0u;
			pemesh_eembc_put(e, "m-[Expecting ");
			pemesh_eembc_put_u32(e, e->db_size);
			pemesh_eembc_line(e, " bytes]", "");
		}
	} else if (strcmp(sub, "print") == 0) {
		int64_t n = pemesh_eembc_number(pemesh_eembc_word(&rest));
		int64_t off = pemesh_eembc_number(pemesh_eembc_word(&rest));
		static const char hex[] = "0123456789abcdef";
		uint32_t end, i;

		n = n < 0 ? 16 : n;
		off = off < 0 ? 0 : off;
		end = (uint64_t)(off + n) < e->db_size ? (uint32_t)(off + n) : e->db_size;
		for (i = (uint32_t)off; i < end; i++) {
			const uint8_t b = *pemesh_eembc_input_byte(i);
			char two[3] = { hex[b >> 4], hex[b & 15u], '\0' };

			pemesh_eembc_put(e, (i - (uint32_t)off) % 8u == 0u ? "m-buffer-" : "-");
			pemesh_eembc_put(e, two);
			if ((i - (uint32_t)off) % 8u == 7u || i + 1u == end) {
				pemesh_eembc_line(e, "", "");
			}
		}
	} else {
		size_t len = strlen(sub);

		if ((len & 1u) != 0u) {
			pemesh_eembc_line(e, "e-[Insufficent number of hex digits]", "");
			return;
		}
		for (size_t i = 0; i < len; i += 2u) {
			int hi = pemesh_eembc_hexdigit(sub[i]);
			int lo = pemesh_eembc_hexdigit(sub[i + 1u]);
			char bad[3] = { sub[i], sub[i + 1u], '\0' };

			if (hi < 0 || lo < 0) {
				pemesh_eembc_line3(e, "e-[Invalid hex digit '", bad, "']");
				return;
			}
			if (e->db_pos < e->db_size) {
				*pemesh_eembc_input_byte(e->db_pos) = (uint8_t)(hi << 4 | lo);
				e->db_pos++;
				if (e->db_pos == e->db_size) {
					pemesh_eembc_line(e, "m-load-done", "");
					return; /* the rest of the digits is ignored, as upstream */
				}
			}
		}
	}
}

/* One inference: on this PE alone, or through the mesh. */
static int32_t pemesh_eembc_run(struct pemesh_pe *pe)
{
	return pemesh_eembc_model.results != NULL ? pemesh_eembc_run_mesh(pe)
						  : pemesh_pe_run_model(pe);
}

static void pemesh_eembc_infer(struct pemesh_pe *pe, char *rest)
{
	struct pemesh_eembc *e = &pe->eembc;
	char *nw = pemesh_eembc_word(&rest);
	char *ww = pemesh_eembc_word(&rest);
	int64_t n = nw != NULL ? pemesh_eembc_number(nw) : 1;
	int64_t w = ww != NULL ? pemesh_eembc_number(ww) : 10; /* upstream's default */
	int32_t status = 0;

	if (n <= 0) {
		pemesh_eembc_line(e, "e-[Inference iterations must be >0]", "");
		return;
	}
	if (w < 0) {
		pemesh_eembc_line(e, "e-[Inference warmup must be >=0]", "");
		return;
	}
	if (pe->init_status != 0) {
		pemesh_eembc_line3(e, "e-[", pe->init_error, "]");
		return;
	}
	if (e->db_size == 0u || e->db_pos != e->db_size) {
		pemesh_eembc_put(e, "e-[infer: load the ");
		pemesh_eembc_put_u32(e, pemesh_eembc_input_bytes());
		pemesh_eembc_line(e, " input bytes first (db load N, db HH...)]", "");
		return;
	}
	pemesh_eembc_put(e, "m-warmup-start-");
	pemesh_eembc_put_u32(e, (uint32_t)w);
	pemesh_eembc_line(e, "", "");
	for (int64_t i = 0; i < w && status == 0; i++) {
		status = pemesh_eembc_run(pe);
	}
	pemesh_eembc_line(e, "m-warmup-done", "");
	pemesh_eembc_put(e, "m-infer-start-");
	pemesh_eembc_put_u32(e, (uint32_t)n);
	pemesh_eembc_line(e, "", "");
	pemesh_eembc_timestamp(e);
	for (int64_t i = 0; i < n && status == 0; i++) {
		status = pemesh_eembc_run(pe);
	}
	pemesh_eembc_timestamp(e);
	pemesh_eembc_line(e, "m-infer-done", "");
	if (status != 0) {
		e->have_results = 0u;
		pemesh_eembc_put(e, status == -ETIMEDOUT
				 ? "e-[no result from the mesh within the timeout: status -"
				 : "e-[model run failed: status -");
		pemesh_eembc_put_u32(e, (uint32_t)(status < 0 ? -status : status));
		pemesh_eembc_line(e, "]", "");
		return;
	}
	e->have_results = 1u;
	pemesh_eembc_results(e);
}

static void pemesh_eembc_command(struct pemesh_pe *pe, char *cmd)
{
	struct pemesh_eembc *e = &pe->eembc;
	char *rest = cmd;
	char *w = pemesh_eembc_word(&rest);

	if (w == NULL) {
		/* an empty command (a lone '%') only gets "m-ready", as upstream's flush does */
	} else if (strcmp(w, "name") == 0) {
		pemesh_eembc_line3(e, "m-name-dut-[", pemesh_eembc_model.name, "]");
	} else if (strcmp(w, "profile") == 0) {
		pemesh_eembc_line(e, "m-profile-[" PEMESH_EEMBC_FW_VERSION "]", "");
		pemesh_eembc_put(e, "m-model-[");
		pemesh_eembc_put(e, pemesh_eembc_model.name);
		pemesh_eembc_line(e, "]", "");
	} else if (strcmp(w, "help") == 0) {
		for (size_t i = 0; i < sizeof(pemesh_eembc_help) / sizeof(pemesh_eembc_help[0]); i++) {
			pemesh_eembc_line(e, pemesh_eembc_help[i], "");
		}
	} else if (strcmp(w, "timestamp") == 0) {
		pemesh_eembc_timestamp(e);
	} else if (strcmp(w, "db") == 0) {
		pemesh_eembc_db(pe, rest);
	} else if (strcmp(w, "infer") == 0) {
		pemesh_eembc_infer(pe, rest);
	} else if (strcmp(w, "results") == 0) {
		if (e->have_results) {
			pemesh_eembc_results(e);
		} else {
			pemesh_eembc_line(e, "e-[results: no inference has run]", "");
		}
	} else {
		pemesh_eembc_line3(e, "e-[Unknown command: ", w, "]");
	}
	pemesh_eembc_line(e, "m-ready", "");
}

void pemesh_eembc_start(struct pemesh_pe *pe)
{
	struct pemesh_eembc *e = &pe->eembc;

	memset(e, 0, sizeof(*e));
	if (pe->init_status != 0) {
		pemesh_eembc_line3(e, "e-[", pe->init_error, "]");
	}
	pemesh_eembc_line(e, "m-init-done", "");
	pemesh_eembc_line(e, "m-ready", "");
}

void pemesh_eembc_feed(struct pemesh_pe *pe, const uint8_t *data, size_t len)
{
	struct pemesh_eembc *e = &pe->eembc;

	for (size_t i = 0; i < len; i++) {
		char c = (char)data[i];

		if (c == '%') {
			e->cmd[e->cmd_len] = '\0';
			if (e->cmd_overflow) {
				pemesh_eembc_line(e, "e-[Command longer than 80 characters]", "");
				pemesh_eembc_line(e, "m-ready", "");
			} else {
				pemesh_eembc_command(pe, e->cmd);
			}
			e->cmd_len = 0u;
			e->cmd_overflow = 0u;
		} else if (c == '\r' || c == '\n' || c == '\0') {
			/* line ends from a terminal are not part of a command */
		} else if (e->cmd_len < PEMESH_EEMBC_CMD_SIZE) {
			e->cmd[e->cmd_len++] = c;
		} else {
			e->cmd_overflow = 1u;
		}
	}
}

#else /* !PEMESH_HOST_EEMBC */

/* ISO C wants a translation unit to declare something. */
typedef int pemesh_eembc_unused;

#endif /* PEMESH_HOST_EEMBC */
