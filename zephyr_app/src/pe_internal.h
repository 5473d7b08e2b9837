/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * Private to the PE core: what pe.c (the main loop, role SINGLE, the frames every role sends)
 * and pe_stage.c (role STAGE: routes, READY credits, seq order per source) share. Not part of
 * the public API under include/pemesh/. All state stays in the one struct pemesh_pe.
 */
#ifndef PEMESH_PE_INTERNAL_H_
#define PEMESH_PE_INTERNAL_H_

#include <stdint.h>

#include <pemesh/config.h>
#include <pemesh/frame.h>
#include <pemesh/pe.h>

/* --- pe.c: frames and model runs, for both roles ---------------------------------------- */

/**
 * @brief Send one single-chunk frame stamped with the PE's own seq counter (every frame in
 * SINGLE, every non-TENSOR frame in STAGE).
 */
void pemesh_pe_send(struct pemesh_pe *pe, uint8_t link, uint8_t type, uint16_t dst,
		    uint16_t stream, const uint8_t *payload, uint16_t len);

/** @brief Send every chunk of model output @p out to @p dst as its input @p stream; seq
 * numbers come from (and advance) @p *seq. */
void pemesh_pe_send_tensor(struct pemesh_pe *pe, uint8_t link, uint16_t dst, uint16_t stream,
			   uint16_t out, uint16_t *seq);

/** @brief Send an ERROR frame: @p code (a negative errno or the model's status) and @p msg. */
void pemesh_pe_error(struct pemesh_pe *pe, uint8_t link, uint16_t dst, int32_t code,
		     const char *msg);

/**
 * @brief Report a rejected TENSOR frame @p f: an ERROR frame (@p code, @p msg plus the
 * frame's sender, stream, chunk and seq) to its sender on @p link and, in role STAGE when
 * the sender is a PE, the same ERROR to the host on link 0.
 */
void pemesh_pe_reject(struct pemesh_pe *pe, uint8_t link, const struct pemesh_frame *f,
		      int32_t code, const char *msg);

/** @brief Answer a PING: protocol facts and the model's tensor sizes (none after a failed
 * init). */
void pemesh_pe_pong(struct pemesh_pe *pe, uint8_t link, uint16_t dst);

/** @brief Send the STATS counters to @p dst. */
void pemesh_pe_stats(struct pemesh_pe *pe, uint8_t link, uint16_t dst);

/**
 * @brief Run the model on the complete inputs and reset the input reassembly.
 * @retval 0 the run succeeded.
 * @retval other the model's status.
 */
int32_t pemesh_pe_run_model(struct pemesh_pe *pe);

/** @brief ACK frame @p f on @p link with the PE's receive window. */
void pemesh_pe_ack(struct pemesh_pe *pe, uint8_t link, const struct pemesh_frame *f);

/**
 * @brief Store (or reject with pemesh_pe_reject()) one TENSOR frame and ACK it on @p link.
 * @retval 0 the chunk was stored.
 * @retval -errno why it was rejected (also sent as ERROR).
 */
int32_t pemesh_pe_consume(struct pemesh_pe *pe, uint8_t link, const struct pemesh_frame *f);

/** @brief 1 when every input of the model holds all its chunks, else 0. */
int pemesh_pe_inputs_complete(const struct pemesh_pe *pe);

/* --- pe_stage.c: role STAGE (docs/CONTRACTS.md §6) --------------------------------------- */

/**
 * @brief Read and check the routes of a STAGE PE; every route's PE and the host get a peer
 * slot, every route one credit.
 * @retval 0 the routes are usable.
 * @retval -EINVAL a route names a tensor the model does not have (pe->init_error says so).
 */
int pemesh_pe_stage_init(struct pemesh_pe *pe, const volatile struct pemesh_pe_config *cfg);

/** @brief What a STAGE PE waits for, as STATS value PEMESH_STAT_WAITING. */
uint32_t pemesh_pe_waiting(const struct pemesh_pe *pe);

/** @brief Handle one good frame that arrived on @p link of a STAGE PE. */
void pemesh_pe_frame_stage(struct pemesh_pe *pe, uint8_t link, const struct pemesh_frame *f);

/** @brief EEMBC entry PE of a mesh: mark every input complete (the "db" bytes are in
 * place) and run the stage if its outputs are free. */
void pemesh_pe_stage_start(struct pemesh_pe *pe);

/* --- eembc.c: the EEMBC host protocol on a mesh's entry PE (docs/CONTRACTS.md §7) -------- */

/** @brief Store (and ACK on @p link) a chunk of a model result sent by an exit PE. */
void pemesh_eembc_result(struct pemesh_pe *pe, uint8_t link, const struct pemesh_frame *f);

/**
 * @brief One inference through the mesh (eembc_mesh.c): run this stage, wait for every
 * result, give the exit PEs their credits back.
 * @retval 0 every result arrived.
 * @retval -ETIMEDOUT not within PEMESH_EEMBC_MESH_TIMEOUT_S.
 * @retval other this stage's failed run status.
 */
int32_t pemesh_eembc_run_mesh(struct pemesh_pe *pe);

/** @brief pemesh_cycles() per second: the port's rate, or PEMESH_CYCLES_PER_SEC when the port
 * says 0 (a scripted test port). */
uint64_t pemesh_eembc_cycles_per_second(void);

/** @brief This PE's output @p out is model output @p index: copy it into the results. */
void pemesh_eembc_local_result(struct pemesh_pe *pe, uint16_t index, uint16_t out);

#endif /* PEMESH_PE_INTERNAL_H_ */
