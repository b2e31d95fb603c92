/* The message schema: every field's wire name, type and range, and which fields each op
 * requires and allows. Decoder and encoder (msg.c) are driven by these tables alone, so adding
 * a field is one line here. */
#include "schema.h"

#include <stddef.h>

#define F(name, type, member, max)                                                                 \
    { name, type, offsetof(cel_msg, member), max }

const cel_field_desc cel_fields[CEL_F__COUNT] = {
    [CEL_F_SEQ] = F("seq", FT_UINT, seq, UINT64_MAX),
    [CEL_F_ROLE] = F("role", FT_NAME, role, 0),
    [CEL_F_CLIENT] = F("client", FT_TEXT, client, 256),
    [CEL_F_VERSION] = F("version", FT_UINT, version, 65535),
    [CEL_F_SERVER] = F("server", FT_TEXT, server, 256),
    [CEL_F_MAX_FRAME] = F("max_frame", FT_UINT, max_frame, UINT32_MAX),
    [CEL_F_ID] = F("id", FT_ID, id, 0),
    [CEL_F_QUEUE] = F("queue", FT_NAME, queue, 0),
    [CEL_F_TASK] = F("task", FT_NAME, task, 0),
    [CEL_F_ARGS] = F("args", FT_RAW, args, 0),
    [CEL_F_PRIORITY] = F("priority", FT_UINT, priority, CEL_PRIORITY_MAX),
    [CEL_F_DELAY_MS] = F("delay_ms", FT_UINT, delay_ms, CEL_MAX_DURATION_MS),
    [CEL_F_ETA_MS] = F("eta_ms", FT_INT, eta_ms, INT64_MAX / 2),
    [CEL_F_MAX_RETRIES] = F("max_retries", FT_UINT, max_retries, 1000000),
    [CEL_F_SOFT_MS] = F("soft_ms", FT_UINT, soft_ms, CEL_MAX_DURATION_MS),
    [CEL_F_HARD_MS] = F("hard_ms", FT_UINT, hard_ms, CEL_MAX_DURATION_MS),
    [CEL_F_RESULT_TTL_S] = F("result_ttl_s", FT_UINT, result_ttl_s, CEL_MAX_DURATION_MS / 1000),
    [CEL_F_UNIQUE_KEY] = F("unique_key", FT_ID, unique_key, 0),
    [CEL_F_EXPIRES_MS] = F("expires_ms", FT_INT, expires_ms, INT64_MAX / 2),
    [CEL_F_TASKS] = F("tasks", FT_TASKS, tasks, 100000),
    [CEL_F_QUEUES] = F("queues", FT_NAMES, queues, 256),
    [CEL_F_CREDITS] = F("credits", FT_UINT, credits, 100000),
    [CEL_F_ATTEMPT] = F("attempt", FT_UINT, attempt, UINT32_MAX),
    [CEL_F_TOKEN] = F("token", FT_UINT, token, UINT64_MAX),
    [CEL_F_LEASE_MS] = F("lease_ms", FT_UINT, lease_ms, CEL_MAX_DURATION_MS),
    [CEL_F_RESULT] = F("result", FT_RAW, result, 0),
    [CEL_F_ERROR] = F("error", FT_TEXT, error, CEL_TEXT_MAX),
    [CEL_F_RETRY] = F("retry", FT_BOOL, retry, 0),
    [CEL_F_REASON] = F("reason", FT_NAME, reason, 0),
    [CEL_F_TIMEOUT_MS] = F("timeout_ms", FT_UINT, timeout_ms, CEL_MAX_DURATION_MS),
    [CEL_F_STATE] = F("state", FT_NAME, state, 0),
    [CEL_F_EXISTED] = F("existed", FT_BOOL, existed, 0),
    [CEL_F_IDS] = F("ids", FT_IDS, ids, 100000),
    [CEL_F_CODE] = F("code", FT_NAME, code, 0),
    [CEL_F_MSG] = F("msg", FT_TEXT, msg, CEL_TEXT_MAX),
    [CEL_F_CREATED_MS] = F("created_ms", FT_INT, created_ms, INT64_MAX / 2),
    [CEL_F_STARTED_MS] = F("started_ms", FT_INT, started_ms, INT64_MAX / 2),
    [CEL_F_FINISHED_MS] = F("finished_ms", FT_INT, finished_ms, INT64_MAX / 2),
    [CEL_F_WORKER] = F("worker", FT_TEXT, worker, 256),
    [CEL_F_STATS] = F("stats", FT_RAW, stats, 0),
    [CEL_F_COUNT] = F("count", FT_UINT, count, 1000000000),
    [CEL_F_CURSOR] = F("cursor", FT_UINT, cursor, 1000000000),
};

#define B(f) ((uint64_t)1 << CEL_F_##f)
#define ENQUEUE_OPTS                                                                               \
    (B(ID) | B(ARGS) | B(PRIORITY) | B(DELAY_MS) | B(ETA_MS) | B(MAX_RETRIES) | B(SOFT_MS) |       \
     B(HARD_MS) | B(RESULT_TTL_S) | B(UNIQUE_KEY) | B(EXPIRES_MS))

const cel_op_desc cel_ops[CEL_OP__COUNT] = {
    [CEL_OP_HELLO] = {"hello", B(SEQ) | B(ROLE) | B(VERSION), B(CLIENT)},
    [CEL_OP_WELCOME] = {"welcome", B(SEQ) | B(SERVER) | B(VERSION) | B(MAX_FRAME), 0},
    [CEL_OP_ENQUEUE] = {"enqueue", B(SEQ) | B(QUEUE) | B(TASK), ENQUEUE_OPTS},
    [CEL_OP_ENQUEUE_BULK] = {"enqueue_bulk", B(SEQ) | B(TASKS), 0},
    [CEL_OP_CONSUME] = {"consume", B(SEQ) | B(QUEUES) | B(CREDITS), 0},
    [CEL_OP_TASK] = {"task",
                     B(ID) | B(QUEUE) | B(TASK) | B(ARGS) | B(ATTEMPT) | B(TOKEN) | B(LEASE_MS),
                     B(SOFT_MS) | B(HARD_MS)},
    [CEL_OP_ACK] = {"ack", B(SEQ) | B(ID) | B(TOKEN), B(RESULT)},
    [CEL_OP_FAIL] = {"fail", B(SEQ) | B(ID) | B(TOKEN) | B(ERROR), B(RETRY) | B(REASON)},
    [CEL_OP_TOUCH] = {"touch", B(SEQ) | B(ID) | B(TOKEN), B(LEASE_MS)},
    [CEL_OP_STATUS] = {"status", B(SEQ) | B(ID), 0},
    [CEL_OP_WAIT] = {"wait", B(SEQ) | B(ID) | B(TIMEOUT_MS), 0},
    [CEL_OP_CANCEL] = {"cancel", B(SEQ) | B(ID), 0},
    [CEL_OP_ABORT] = {"abort", B(ID) | B(TOKEN), B(REASON)},
    [CEL_OP_STATS] = {"stats", B(SEQ), 0},
    [CEL_OP_PING] = {"ping", B(SEQ), 0},
    [CEL_OP_OK] = {"ok", B(SEQ), B(ID) | B(STATE) | B(EXISTED) | B(IDS) | B(COUNT) | B(CURSOR)},
    [CEL_OP_ERROR] = {"error", B(CODE) | B(MSG), B(SEQ)},
    [CEL_OP_TASK_INFO] = {"task_info", B(SEQ) | B(ID) | B(STATE),
                          B(QUEUE) | B(TASK) | B(ATTEMPT) | B(MAX_RETRIES) | B(PRIORITY) |
                              B(CREATED_MS) | B(STARTED_MS) | B(FINISHED_MS) | B(RESULT) |
                              B(ERROR) | B(REASON) | B(WORKER)},
    [CEL_OP_STATS_INFO] = {"stats_info", B(SEQ) | B(STATS), 0},
    [CEL_OP_PAUSE] = {"pause", B(SEQ) | B(QUEUE), 0},
    [CEL_OP_RESUME] = {"resume", B(SEQ) | B(QUEUE), 0},
    [CEL_OP_DEAD_LIST] = {"dead_list", B(SEQ) | B(QUEUE), B(COUNT)},
    [CEL_OP_DEAD_REQUEUE] = {"dead_requeue", B(SEQ) | B(QUEUE), B(ID)},
    [CEL_OP_DEAD_PURGE] = {"dead_purge", B(SEQ) | B(QUEUE), 0},
    [CEL_OP_PURGE] = {"purge", B(SEQ) | B(QUEUE), 0},
    [CEL_OP_PEEK] = {"peek", B(SEQ) | B(QUEUE) | B(STATE), B(COUNT) | B(CURSOR)},
};

/* One entry of a bulk enqueue: an enqueue without op and seq. */
const cel_op_desc cel_bulk_entry_desc = {"enqueue_bulk entry", B(QUEUE) | B(TASK), ENQUEUE_OPTS};

const char *cel_op_name(cel_op op) {
    if (op <= CEL_OP_NONE || op >= CEL_OP__COUNT) return "none";
    return cel_ops[op].name;
}

const char *cel_field_name(cel_field f) {
    if ((unsigned)f >= CEL_F__COUNT) return "?";
    return cel_fields[f].name;
}
