/* Internal helpers shared by the sync and async client (see requests.c). */
#ifndef CELERIAC_CLIENT_REQUESTS_H
#define CELERIAC_CLIENT_REQUESTS_H

#include <celeriac/celeriac.h>
#include <celeriac/conn.h>

void req_new_id(char out[CELERIAC_ID_SIZE]);
int req_check_names(const char *queue, const char *task, const celeriac_opts *o);
void req_enqueue(cel_msg *m, const char *queue, const char *task, const cel_raw *args,
                 const celeriac_opts *o, const char *id);
void req_task_info(const cel_msg *r, celeriac_task_info *t);
/* CELERIAC_OK, or the error a reply (or a local failure) carries. */
int req_code(const cel_msg *r, const cel_error *err);
bool req_json_args(const char *text, cel_buf *out, char *why, size_t cap);
/* Bulk entries (validated, ids assigned) into caller-allocated arrays of n. */
int req_bulk_entries(const celeriac_bulk_item *items, size_t n, cel_msg *entries, cel_buf *args,
                     char (*ids)[CELERIAC_ID_SIZE]);
char **req_split_brokers(const char *list, size_t *n);
void req_free_brokers(char **b, size_t n);

#endif
