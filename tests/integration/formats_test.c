/* formats_test.c: the other ways in and out (docs/api.md): multipart/form-data with real
 * files, application/msgpack bodies, a result that is a file (downloads as itself), and
 * msgpack results. */
#include <string.h>

#include "testlib.h"

TL_TEST(multipart_files_become_the_input) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"echo"}});
    /* Two files, one with CRLF and NUL bytes inside, as curl -F sends them. */
    const char file2[] = "%PDF\r\n--x\r\n\0binary";
    size_t cap = 4096, n = 0;
    char *body = tl_alloc(cap);
    n += (size_t)snprintf(body + n, cap - n,
                          "--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\necho\r\n"
                          "--XyZ\r\nContent-Disposition: form-data; name=\"options\"\r\n\r\n"
                          "{\"priority\": \"high\"}\r\n"
                          "--XyZ\r\nContent-Disposition: form-data; name=\"files\"; "
                          "filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
                          "--XyZ\r\nContent-Disposition: form-data; name=\"files\"; "
                          "filename=\"b.pdf\"\r\nContent-Type: application/pdf\r\n\r\n");
    memcpy(body + n, file2, sizeof file2 - 1);
    n += sizeof file2 - 1;
    n += (size_t)snprintf(body + n, cap - n, "\r\n--XyZ--\r\n");
    tl_req req = {.method = "POST",
                  .body = body,
                  .body_len = n,
                  .content_type = "multipart/form-data; boundary=XyZ"};
    req.headers[0] = "Prefer: wait=20";
    tl_resp *r = tl_request(f, "/v1/jobs", req);
    ASSERT_HTTP_STATUS(r, 200);
    ASSERT_EQ_STR(tl_jstr(r->json, "priority"), "high");
    json_t *files = tl_jget(r->json, "result.files");
    ASSERT_EQ_INT((long long)json_array_size(files), 2);
    ASSERT_EQ_STR(tl_jstr(json_array_get(files, 0), "name"), "a.txt");
    ASSERT_EQ_STR(tl_jstr(json_array_get(files, 0), "content_type"), "text/plain");
    ASSERT_EQ_INT(tl_jint(json_array_get(files, 0), "size"), 5);
    ASSERT_EQ_INT(tl_jint(json_array_get(files, 1), "size"), (long long)sizeof file2 - 1);

    /* A broken form: 400, nothing written. */
    tl_req bad = req;
    bad.body = "--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\necho\r\n";
    bad.body_len = 0;
    ASSERT_PROBLEM(tl_request(f, "/v1/jobs", bad), 400);
    bad.content_type = "multipart/form-data";
    ASSERT_PROBLEM(tl_request(f, "/v1/jobs", bad), 400);
    ASSERT_EQ_INT(tl_jint(tl_get(f, "/v1/stats")->json, "models.echo.submitted"), 1);
}

/* {"model": "echo", "input": {"content_type": "text/plain", "bytes": <bin>, "filename":
 * "a b.txt"}} in msgpack: echo returns it, and the result downloads as the file. */
TL_TEST(msgpack_body_and_a_file_result) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){.workers = {"echo"}});
    static const char mp[] = "\x82"
                             "\xa5model\xa4"
                             "echo"
                             "\xa5input\x83"
                             "\xac"
                             "content_type\xaa"
                             "text/plain"
                             "\xa5"
                             "bytes\xc4\x0c"
                             "hello\r\nworld"
                             "\xa8"
                             "filename\xa7"
                             "a b.txt";
    tl_req req = {.method = "POST",
                  .body = mp,
                  .body_len = sizeof mp - 1,
                  .content_type = "application/msgpack"};
    tl_resp *r = tl_request(f, "/v1/jobs", req);
    ASSERT_HTTP_STATUS(r, 202);
    const char *id = tl_jstr(r->json, "id");
    tl_job_wait_status(f, id, "succeeded", TL_WAIT_MS);
    tl_resp *res = tl_get(f, tl_printf("/v1/jobs/%s/result", id));
    ASSERT_HTTP_STATUS(res, 200);
    ASSERT_STR_CONTAINS(res->content_type, "text/plain");
    ASSERT_EQ_INT((long long)res->body_len, 12);
    ASSERT_TRUE(memcmp(res->body, "hello\r\nworld", 12) == 0);
    const char *cd = tl_resp_header(res, "Content-Disposition");
    ASSERT_NOT_NULL(cd);
    ASSERT_STR_CONTAINS(cd, "attachment; filename=\"a b.txt\"");
    /* Accept: application/msgpack still gives the stored msgpack. */
    tl_req want = {.headers = {"Accept: application/msgpack"}};
    tl_resp *raw = tl_request(f, tl_printf("/v1/jobs/%s/result", id), want);
    ASSERT_STR_CONTAINS(raw->content_type, "application/msgpack");
    ASSERT_TRUE(raw->body_len > 12);

    /* Truncated msgpack: 400, nothing written. */
    tl_req bad = req;
    bad.body_len = 20;
    ASSERT_STR_CONTAINS(ASSERT_PROBLEM(tl_request(f, "/v1/jobs", bad), 400), "msgpack");
    ASSERT_EQ_INT(tl_jint(tl_get(f, "/v1/stats")->json, "models.echo.submitted"), 1);
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(multipart_files_become_the_input),
        TL_CASE(msgpack_body_and_a_file_result),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
