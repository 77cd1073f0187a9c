/* query_test: the rule that an API route refuses a query parameter it does not read, or one
 * given twice (gateway/query.c, gw_query_check), and the table of the parameters each route
 * reads (gw_query_params_of). api_rules_test checks the same against a live gateway. */
#include <string.h>

#include "query.h"
#include "testlib.h"

static const char *refused(const char *q, const char *known) {
    static char err[320];
    err[0] = '\0';
    if (gw_query_check(q, known, err, sizeof err) == 0) FAILF("query '%s' was accepted", q);
    return err;
}

static void accepted(const char *q, const char *known) {
    char err[320] = "";
    if (gw_query_check(q, known, err, sizeof err) != 0) FAILF("query '%s' was refused: %s", q, err);
}

TL_TEST(known_parameters_and_empty_queries_pass) {
    accepted(NULL, "");
    accepted("", "");
    accepted("&", "");
    accepted("&&&", "wait");
    accepted("status=queued&limit=5", "status,model,cursor,limit");
    accepted("limit=1&&model=echo&", "status,model,cursor,limit");
    accepted("cursor", "status,model,cursor,limit"); /* a name without '=' is still that name */
    accepted("wait=", "wait");
}

TL_TEST(unknown_parameters_are_named) {
    ASSERT_EQ_STR(refused("staus=failed", "status,model,cursor,limit"),
                  "unknown query parameter 'staus'; this route takes status, model, cursor, limit");
    ASSERT_EQ_STR(refused("x=1", ""),
                  "unknown query parameter 'x'; this route takes no query parameters");
    ASSERT_EQ_STR(refused("a&b=2&limit=1&c", "limit"),
                  "unknown query parameters 'a', 'b', 'c'; this route takes limit");
    /* Past four, the rest are summed up. */
    ASSERT_STR_CONTAINS(refused("a&b&c&d&e&f", ""), "'a', 'b', 'c', 'd' and more;");
    /* Names are matched as sent: an escape is not decoded into a known name. */
    ASSERT_STR_CONTAINS(refused("%73tatus=queued", "status"), "'%73tatus'");
    /* A prefix or an extension of a known name is another name. */
    ASSERT_STR_CONTAINS(refused("stat=1", "status"), "'stat'");
    ASSERT_STR_CONTAINS(refused("statuses=1", "status"), "'statuses'");
    /* An empty name ("=1") is a parameter too. */
    ASSERT_STR_CONTAINS(refused("=1", "status"), "unknown query parameter ''");
}

TL_TEST(names_are_shown_safely_and_cut_short) {
    /* Bytes outside printable ASCII show as '?', and a long name is cut at 40 bytes. */
    ASSERT_STR_CONTAINS(refused("a\x01\x7f"
                                "b=1",
                                ""),
                        "'a??b'");
    char q[300];
    memset(q, 'n', 200);
    strcpy(q + 200, "=1");
    const char *err = refused(q, "");
    ASSERT_STR_CONTAINS(err, "'nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn...'");
    ASSERT_TRUE(strlen(err) < 200);
    /* A small buffer gets a cut message, never an overflow. */
    char small[16];
    ASSERT_EQ_INT(gw_query_check("zzz=1", "", small, sizeof small), -1);
    ASSERT_EQ_INT(strlen(small), sizeof small - 1);
}

TL_TEST(a_parameter_given_twice_is_refused) {
    ASSERT_EQ_STR(refused("status=queued&limit=2&status=failed", "status,model,cursor,limit"),
                  "query parameter 'status' is given more than once; give it once");
    ASSERT_STR_CONTAINS(refused("wait&wait=1", "wait"), "'wait' is given more than once");
    /* An unknown one is named first. */
    ASSERT_STR_CONTAINS(refused("limit=1&limit=2&x=1", "limit"), "unknown query parameter 'x'");
}

TL_TEST(the_table_of_each_route) {
    ASSERT_EQ_STR(gw_query_params_of("GET", "/v1/jobs"),
                  "status,model,cursor,limit,tenant,since,until");
    ASSERT_EQ_STR(gw_query_params_of("POST", "/v1/jobs"), "wait");
    ASSERT_EQ_STR(gw_query_params_of("GET", "/v1/jobs/{id}"), "wait");
    ASSERT_EQ_STR(gw_query_params_of("DELETE", "/v1/jobs/{id}"), "purge");
    ASSERT_EQ_STR(gw_query_params_of("GET", "/v1/jobs/{id}/result"), "");
    ASSERT_EQ_STR(gw_query_params_of("PUT", "/v1/jobs"), "");
    ASSERT_EQ_STR(gw_query_params_of(NULL, NULL), "");
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(known_parameters_and_empty_queries_pass),
        TL_CASE(unknown_parameters_are_named),
        TL_CASE(names_are_shown_safely_and_cut_short),
        TL_CASE(a_parameter_given_twice_is_refused),
        TL_CASE(the_table_of_each_route),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
