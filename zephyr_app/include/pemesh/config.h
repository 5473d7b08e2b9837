/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * pemesh build-time options and the per-PE identity block.
 */
#ifndef PEMESH_CONFIG_H_
#define PEMESH_CONFIG_H_

#include <stdint.h>

/**
 * @defgroup pemesh_config pemesh configuration
 * @{
 *
 * Build-time options come from Kconfig (CONFIG_PEMESH_*) in a Zephyr build; bare-metal and
 * host builds get the defaults below (keep them equal to the Kconfig defaults) or -D flags.
 */

#ifndef CONFIG_PEMESH_MAX_PAYLOAD
#define CONFIG_PEMESH_MAX_PAYLOAD 256
#endif
#ifndef CONFIG_PEMESH_RX_BUFFER_SIZE
#define CONFIG_PEMESH_RX_BUFFER_SIZE 1024
#endif
#ifndef CONFIG_PEMESH_MAX_TENSORS
#define CONFIG_PEMESH_MAX_TENSORS 8
#endif
#ifndef CONFIG_PEMESH_LINKS
#define CONFIG_PEMESH_LINKS 3
#endif
#ifndef CONFIG_PEMESH_BYTE_TIMEOUT_MS
#define CONFIG_PEMESH_BYTE_TIMEOUT_MS 100
#endif
#ifndef CONFIG_PEMESH_READY_PERIOD_MS
#define CONFIG_PEMESH_READY_PERIOD_MS 300
#endif
#ifndef CONFIG_PEMESH_EEMBC_DECIMALS
#define CONFIG_PEMESH_EEMBC_DECIMALS 3
#endif

/** 1 when link 0 speaks the EEMBC / MLPerf Tiny DUT protocol (include/pemesh/eembc.h)
 * instead of frames: CONFIG_PEMESH_HOST_PROTOCOL_EEMBC (-D...=1 in bare-metal builds). */
#if defined(CONFIG_PEMESH_HOST_PROTOCOL_EEMBC) && CONFIG_PEMESH_HOST_PROTOCOL_EEMBC
#define PEMESH_HOST_EEMBC 1
#else
#define PEMESH_HOST_EEMBC 0
#endif

/** pemesh_cycles() per second when a port's pemesh_cycles_per_second() says 0 (a scripted test
 * port): the system clock under Zephyr, nanoseconds on the host port, else 12.5 MHz. Ports
 * report their own rate (mps2-an386: 25 MHz), which wins. */
#ifndef PEMESH_CYCLES_PER_SEC
#if defined(CONFIG_SYS_CLOCK_HW_CYCLES_PER_SEC)
#define PEMESH_CYCLES_PER_SEC ((uint32_t)CONFIG_SYS_CLOCK_HW_CYCLES_PER_SEC)
#elif defined(PEMESH_PORT_HOST)
#define PEMESH_CYCLES_PER_SEC 1000000000u
#else
#define PEMESH_CYCLES_PER_SEC 12500000u
#endif
#endif

/** Largest frame payload in bytes (docs/CONTRACTS.md §1). */
#define PEMESH_MAX_PAYLOAD ((uint16_t)CONFIG_PEMESH_MAX_PAYLOAD)
/** Receive ring buffer bytes per link (a power of two). */
#define PEMESH_RX_BUFFER_SIZE ((uint32_t)CONFIG_PEMESH_RX_BUFFER_SIZE)
/** Most model inputs (and outputs) the PE main loop tracks. */
#define PEMESH_MAX_TENSORS CONFIG_PEMESH_MAX_TENSORS
/** Number of links the port drives (link 0 = host link). */
#define PEMESH_LINKS CONFIG_PEMESH_LINKS
/** Milliseconds without a byte after which a partly received frame is abandoned. */
#define PEMESH_BYTE_TIMEOUT_MS ((uint32_t)CONFIG_PEMESH_BYTE_TIMEOUT_MS)
/** Milliseconds (of the PE's clock) after which a READY for a still-empty input goes again. */
#define PEMESH_READY_PERIOD_MS ((uint32_t)CONFIG_PEMESH_READY_PERIOD_MS)

#if (CONFIG_PEMESH_RX_BUFFER_SIZE & (CONFIG_PEMESH_RX_BUFFER_SIZE - 1)) != 0
#error "CONFIG_PEMESH_RX_BUFFER_SIZE must be a power of two"
#endif

/** Magic of struct pemesh_pe_config: "PEMC" in little-endian byte order. */
#define PEMESH_PE_CONFIG_MAGIC 0x434D4550u
/** Layout version of struct pemesh_pe_config. */
#define PEMESH_PE_CONFIG_VERSION 1u
/** Size in bytes of struct pemesh_pe_config (fixed: stamped into images after linking). */
#define PEMESH_PE_CONFIG_SIZE 128u
/** Bytes reserved for routes in struct pemesh_pe_config. */
#define PEMESH_PE_CONFIG_ROUTE_BYTES 112u

/** Roles of a PE (pemesh_pe_config.role; docs/CONTRACTS.md §6). */
enum pemesh_role {
	PEMESH_ROLE_SINGLE = 0, /**< the whole model on one PE, talking to the host on link 0 */
	PEMESH_ROLE_STAGE = 1,  /**< a pipeline stage or shard of a mesh, wired by its routes */
};

/** Kinds of a route entry (struct pemesh_route.kind). */
enum pemesh_route_kind {
	PEMESH_ROUTE_OUTPUT = 1, /**< output `a` goes to PE `pe` (0xFFFF = host) as its input `b` */
	PEMESH_ROUTE_SOURCE = 2, /**< input `a` comes from PE `pe` (0xFFFF = host), its output `b` */
};

/** Bytes of one route entry in pemesh_pe_config.routes: u8 kind, u8 a, u16 pe, u16 b (LE). */
#define PEMESH_ROUTE_SIZE 6u
/** Most route entries a pemesh_pe_config holds (112 / 6). */
#define PEMESH_MAX_ROUTES (PEMESH_PE_CONFIG_ROUTE_BYTES / PEMESH_ROUTE_SIZE)

/**
 * pemesh_pe_config.flags bit 0: in role STAGE, outputs without an OUTPUT route go to the host
 * on link 0 (stream = output index), as in role SINGLE.
 */
#define PEMESH_FLAG_HOST_OUTPUTS (1u << 0)

/** One decoded route entry (see enum pemesh_route_kind). */
struct pemesh_route {
	uint8_t kind; /**< enum pemesh_route_kind */
	uint8_t a;    /**< OUTPUT: this PE's output index; SOURCE: this PE's input index */
	uint16_t pe;  /**< the other PE (0xFFFF = host) */
	uint16_t b;   /**< OUTPUT: the other PE's input index; SOURCE: its output index */
};

/**
 * The per-PE identity block.
 *
 * Generated as `src/pe_config.c` of each PE app and placed in the flash section
 * `.pemesh_config`. PEs of one stage share one firmware image; `pemesh build` stamps this
 * block per PE after linking, so it is fixed-size, self-contained (no pointers) and
 * little-endian. Layout (byte offsets): 0 magic, 4 version, 6 pe_id, 8 role, 9 n_routes,
 * 10 reserved, 12 flags, 16 routes[112] (6-byte entries, see struct pemesh_route).
 */
struct pemesh_pe_config {
	uint32_t magic;    /**< PEMESH_PE_CONFIG_MAGIC */
	uint16_t version;  /**< PEMESH_PE_CONFIG_VERSION */
	uint16_t pe_id;    /**< this PE's id (0..0xFFFE; 0xFFFF is the host) */
	uint8_t role;      /**< enum pemesh_role */
	uint8_t n_routes;  /**< route entries in use (<= PEMESH_MAX_ROUTES) */
	uint16_t reserved; /**< zero */
	uint32_t flags;    /**< PEMESH_FLAG_* bits; zero where unused */
	/** n_routes entries of PEMESH_ROUTE_SIZE bytes (read with pemesh_config_route()), then 0 */
	uint8_t routes[PEMESH_PE_CONFIG_ROUTE_BYTES];
};

_Static_assert(sizeof(struct pemesh_pe_config) == PEMESH_PE_CONFIG_SIZE,
	       "struct pemesh_pe_config must stay 128 bytes");

/** This PE's identity block (defined by the generated src/pe_config.c). */
extern const struct pemesh_pe_config pemesh_pe_config;

/**
 * @brief Decode route entry @p index of a config block (explicit little-endian).
 *
 * Takes a volatile pointer because the block is stamped per PE after linking: the compiler
 * must read it, not fold the linked-in values.
 *
 * @retval 0 success, *out filled
 * @retval -EINVAL @p index >= n_routes, or n_routes > PEMESH_MAX_ROUTES
 */
int pemesh_config_route(const volatile struct pemesh_pe_config *cfg, uint8_t index,
			struct pemesh_route *out);

/**
 * @brief Check a config block: magic, version, role, n_routes and every route's kind.
 * @param why Receives a message for a non-zero result (may be NULL).
 * @retval 0 valid
 * @retval -EINVAL not valid (*why says what)
 */
int pemesh_config_check(const volatile struct pemesh_pe_config *cfg, const char **why);

/** @} */

#endif /* PEMESH_CONFIG_H_ */
