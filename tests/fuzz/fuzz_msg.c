/* Fuzz target: one frame body through the pre-check and the message decoder, then every bulk
 * entry and list item of whatever decoded. */
#include <celeriac/proto.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    msgpack_zone zone;
    msgpack_zone_init(&zone, 1024);
    cel_msg m;
    cel_error err;
    if (cel_msg_decode(data, size, &zone, 0, &m, &err) == CEL_OK) {
        for (uint32_t i = 0; i < m.tasks.n; i++) {
            cel_msg e;
            if (cel_msg_bulk_entry(&m, i, &e, &err) != CEL_OK) __builtin_trap();
        }
        for (uint32_t i = 0; i < m.queues.n; i++)
            if (!cel_name_valid(cel_list_str(&m.queues, i).ptr, cel_list_str(&m.queues, i).len))
                __builtin_trap();
        for (uint32_t i = 0; i < m.ids.n; i++) (void)cel_list_str(&m.ids, i);
    }
    msgpack_zone_destroy(&zone);
    return 0;
}
