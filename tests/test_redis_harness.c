/* Proves the Redis harness: a real redis-server starts on a free port, keeps an acknowledged
 * write across kill -9 (AOF, appendfsync always), and is gone after stop. */
#include <signal.h>
#include <string.h>

#include "harness.h"

static void test_redis_write_survives_kill9_with_aof(void) {
    th_redis r;
    CU_ASSERT_FATAL(th_redis_start(&r, NULL));
    redisContext *c = th_redis_connect(&r);
    CU_ASSERT_FATAL(c != NULL);
    redisReply *rep = redisCommand(c, "SET %s %s", "cel:probe", "kept");
    CU_ASSERT_FATAL(rep != NULL);
    CU_ASSERT_STRING_EQUAL(rep->str, "OK");
    freeReplyObject(rep);
    redisFree(c);

    th_redis_kill(&r);
    CU_ASSERT_FALSE(th_wait_port(r.port, 200));
    CU_ASSERT_FATAL(th_redis_restart(&r));
    c = th_redis_connect(&r);
    CU_ASSERT_FATAL(c != NULL);
    rep = redisCommand(c, "GET %s", "cel:probe");
    CU_ASSERT_FATAL(rep != NULL && rep->type == REDIS_REPLY_STRING);
    CU_ASSERT_STRING_EQUAL(rep->str, "kept");
    freeReplyObject(rep);
    redisFree(c);
    th_redis_stop(&r);
    CU_ASSERT_FALSE(th_wait_port(r.port, 200));
}

static void test_free_ports_differ_between_redis_instances(void) {
    th_redis a, b;
    CU_ASSERT_FATAL(th_redis_start(&a, NULL));
    CU_ASSERT_FATAL(th_redis_start(&b, "appendfsync everysec"));
    CU_ASSERT_NOT_EQUAL(a.port, b.port);
    CU_ASSERT_NOT_EQUAL(strcmp(a.dir, b.dir), 0);
    th_redis_stop(&a);
    th_redis_stop(&b);
}

int main(void) {
    static const th_test tests[] = {
        {"redis write survives kill -9 with AOF", test_redis_write_survives_kill9_with_aof},
        {"free ports differ between redis instances",
         test_free_ports_differ_between_redis_instances},
        {NULL, NULL}};
    return th_run("redis harness", tests);
}
