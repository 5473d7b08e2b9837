/*
 * SPDX-License-Identifier: Apache-2.0
 */
#ifndef PEMESH_CRC32_H_
#define PEMESH_CRC32_H_

#include <stddef.h>
#include <stdint.h>

/**
 * @brief Update a CRC-32 (zlib/IEEE 802.3: reflected polynomial 0xEDB88320, initial value
 * and final xor 0xFFFFFFFF) with @p len bytes.
 *
 * Same convention as zlib's crc32(): start with @p crc = 0; the result of one call can be
 * passed as @p crc of the next to continue over more bytes.
 *
 * @param crc  CRC of the bytes so far (0 for none).
 * @param data Bytes to add (may be NULL when @p len is 0).
 * @param len  Number of bytes.
 * @retval The CRC-32 of all bytes so far.
 */
uint32_t pemesh_crc32(uint32_t crc, const void *data, size_t len);

#endif /* PEMESH_CRC32_H_ */
