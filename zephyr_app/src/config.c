/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * Reading the per-PE identity block (struct pemesh_pe_config, docs/CONTRACTS.md §1 and §6).
 */
#include <errno.h>
#include <stddef.h>

#include <pemesh/config.h>

int pemesh_config_route(const volatile struct pemesh_pe_config *cfg, uint8_t index,
			struct pemesh_route *out)
{
	const volatile uint8_t *p;

	if (cfg->n_routes > PEMESH_MAX_ROUTES || index >= cfg->n_routes) {
		return -EINVAL;
	}
	p = &cfg->routes[(size_t)index * PEMESH_ROUTE_SIZE];
	out->kind = p[0];
	out->a = p[1];
	out->pe = (uint16_t)(p[2] | (p[3] << 8));
	out->b = (uint16_t)(p[4] | (p[5] << 8));
	return 0;
}

int pemesh_config_check(const volatile struct pemesh_pe_config *cfg, const char **why)
{
	const char *msg = NULL;

	if (cfg->magic != PEMESH_PE_CONFIG_MAGIC || cfg->version != PEMESH_PE_CONFIG_VERSION) {
		msg = "bad pemesh_pe_config block (magic/version)";
	} else if (cfg->role != PEMESH_ROLE_SINGLE && cfg->role != PEMESH_ROLE_STAGE) {
		msg = "pemesh_pe_config: unknown role";
	} else if (cfg->n_routes > PEMESH_MAX_ROUTES) {
		msg = "pemesh_pe_config: more than 18 routes";
	} else {
		for (uint8_t i = 0; i < cfg->n_routes; i++) {
			struct pemesh_route r;

			(void)pemesh_config_route(cfg, i, &r);
			if (r.kind != PEMESH_ROUTE_OUTPUT && r.kind != PEMESH_ROUTE_SOURCE) {
				msg = "pemesh_pe_config: a route has an unknown kind";
				break;
			}
		}
	}
	if (why != NULL) {
		*why = msg;
	}
	return msg == NULL ? 0 : -EINVAL;
}
