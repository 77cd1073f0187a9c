/* problems.c: the problem types and reason phrases (problems.h). */
#include "problems.h"

#include <stddef.h>
#include <string.h>

#include "fleet/log.h"

static const gw_problem_type types[GW_PROBLEM_COUNT] = {
#define GW_PROBLEM_ROW(id, slug, status, title) [GW_PROBLEM_##id] = {slug, status, title},
    GW_PROBLEM_TYPES(GW_PROBLEM_ROW)
#undef GW_PROBLEM_ROW
};

const gw_problem_type *gw_problem_type_of(gw_problem_id id) {
    if ((int)id < 0 || id >= GW_PROBLEM_COUNT) id = GW_PROBLEM_INTERNAL;
    return &types[id];
}

int gw_problem_find(const char *slug) {
    for (int i = 0; slug && i < GW_PROBLEM_COUNT; i++)
        if (strcmp(types[i].slug, slug) == 0) return i;
    return -1;
}

gw_problem_id gw_problem_of_slug(const char *slug) {
    int i = gw_problem_find(slug);
    if (i >= 0) return (gw_problem_id)i;
    fleet_log(FLEET_LOG_ERROR, "problem type missing from the table (gateway/problems.h)", "slug",
              slug ? slug : "(null)", NULL);
    return GW_PROBLEM_INTERNAL;
}

/* RFC 9110 section 15 (and RFC 6585 for 429 and 431, RFC 8470 for 425). */
static const struct {
    int status;
    const char *reason;
} reasons[] = {
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {204, "No Content"},
    {207, "Multi-Status"},
    {304, "Not Modified"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {410, "Gone"},
    {411, "Length Required"},
    {413, "Content Too Large"},
    {414, "URI Too Long"},
    {415, "Unsupported Media Type"},
    {422, "Unprocessable Content"},
    {425, "Too Early"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {503, "Service Unavailable"},
};

const char *gw_status_reason(int status) {
    for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
        if (reasons[i].status == status) return reasons[i].reason;
    return NULL;
}
