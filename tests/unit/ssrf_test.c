/* ssrf_test: the webhook URL form, the allowlist and the address policy (gateway/ssrf.c):
 * one table of URLs run through the submit-time check and the checks a delivery makes,
 * and the pin (CURLOPT_RESOLVE) entry, sent through real libcurl (gateway/curl_loop.c) to
 * receivers on 127.0.0.1 and [::1]. No Redis; loopback only. */
#include <arpa/inet.h>
#include <event2/event.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>

#include "curl_loop.h"
#include "ssrf.h"
#include "testlib.h"

/* ------------------------------------------------------------ helpers --------------- */

/* An address from text (IPv4 or IPv6), harness-owned. */
static const struct sockaddr *sa(const char *text) {
    struct sockaddr_storage *ss = tl_alloc(sizeof *ss);
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, text, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
    } else if (inet_pton(AF_INET6, text, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
    } else {
        FAILF("test address %s does not parse", text);
    }
    return (const struct sockaddr *)ss;
}

static const char *reason(const char *addr, const gw_cidr_list *allow) {
    return gw_addr_refused(sa(addr), allow);
}

#define ASSERT_REFUSED(addr, allow, why)                                               \
    do {                                                                               \
        const char *r__ = reason((addr), (allow));                                     \
        if (!r__) FAILF("address %s was admitted; want refused as %s", (addr), (why)); \
        ASSERT_EQ_STR(r__, (why));                                                     \
    } while (0)
#define ASSERT_ADMITTED(addr, allow)                                                \
    do {                                                                            \
        const char *r__ = reason((addr), (allow));                                  \
        if (r__) FAILF("address %s was refused as %s; want admitted", (addr), r__); \
    } while (0)

static gw_url *parse_ok(const char *url) {
    gw_url *u = tl_alloc(sizeof *u);
    char err[256] = "";
    if (gw_url_parse(url, u, err, sizeof err) != 0) FAILF("URL %s was refused: %s", url, err);
    return u;
}

static const char *parse_err(const char *url) {
    gw_url *u = tl_alloc(sizeof *u);
    char *err = tl_alloc(256);
    if (gw_url_parse(url, u, err, 256) == 0) FAILF("URL %s was accepted", url);
    ASSERT_STR_CONTAINS(err, "webhook URL");
    return err;
}

static gw_cidr_list *allow(const char *text) {
    gw_cidr_list *l = tl_alloc(sizeof *l);
    char err[256] = "";
    if (gw_cidr_list_parse(text, l, err, sizeof err) != 0)
        FAILF("allowlist '%s' was refused: %s", text, err);
    return l;
}

static const char *allow_err(const char *text) {
    gw_cidr_list *l = tl_alloc(sizeof *l);
    char *err = tl_alloc(256);
    if (gw_cidr_list_parse(text, l, err, 256) == 0) FAILF("allowlist '%s' was accepted", text);
    ASSERT_EQ_INT(l->n, 0);
    return err;
}

/* The submit-time check: NULL when admitted, else the message. */
static const char *check(const char *url, const gw_cidr_list *l) {
    gw_url *u = parse_ok(url);
    char *err = tl_alloc(256);
    return gw_url_check_literal(u, l, err, 256) == 0 ? NULL : err;
}

/* ------------------------------------------------------------ URLs ------------------ */

TL_TEST(parses_good_urls) {
    gw_url *u = parse_ok("https://example.com/hooks/fleet?x=1&y=2");
    ASSERT_EQ_STR(u->scheme, "https");
    ASSERT_EQ_STR(u->host, "example.com");
    ASSERT_EQ_INT(u->port, 443);
    ASSERT_EQ_STR(u->path, "/hooks/fleet?x=1&y=2");
    ASSERT_FALSE(u->host_is_ip);

    u = parse_ok("HTTP://Example.COM");
    ASSERT_EQ_STR(u->scheme, "http");
    ASSERT_EQ_STR(u->host, "example.com");
    ASSERT_EQ_INT(u->port, 80);
    ASSERT_EQ_STR(u->path, "/");

    u = parse_ok("http://example.com:8080/x#frag");
    ASSERT_EQ_INT(u->port, 8080);
    ASSERT_EQ_STR(u->path, "/x");
    u = parse_ok("http://example.com?q=1");
    ASSERT_EQ_STR(u->path, "/?q=1");
    u = parse_ok("http://example.com#only-a-fragment");
    ASSERT_EQ_STR(u->path, "/");
    u = parse_ok("https://hooks.example.com.:1/a@b"); /* '@' in the path is fine */
    ASSERT_EQ_STR(u->host, "hooks.example.com.");
    ASSERT_EQ_INT(u->port, 1);
    ASSERT_EQ_STR(u->path, "/a@b");
    u = parse_ok("http://_svc.my-host.example:65535/");
    ASSERT_EQ_INT(u->port, 65535);

    u = parse_ok("http://93.184.216.34:8443/hook");
    ASSERT_TRUE(u->host_is_ip);
    ASSERT_EQ_STR(u->host, "93.184.216.34");
    ASSERT_EQ_INT(u->addr.ss_family, AF_INET);
    ASSERT_EQ_INT(ntohs(((struct sockaddr_in *)&u->addr)->sin_port), 8443);

    u = parse_ok("https://[2606:2800:220:1::1]/hook");
    ASSERT_TRUE(u->host_is_ip);
    ASSERT_EQ_STR(u->host, "2606:2800:220:1::1");
    ASSERT_EQ_INT(u->port, 443);
    ASSERT_EQ_INT(u->addr.ss_family, AF_INET6);
    u = parse_ok("http://[2606:2800:220:1::1]:9000");
    ASSERT_EQ_INT(u->port, 9000);
    ASSERT_EQ_STR(u->path, "/");
    ASSERT_EQ_INT(ntohs(((struct sockaddr_in6 *)&u->addr)->sin6_port), 9000);
    u = parse_ok("http://[::FFFF:127.0.0.1]/");
    ASSERT_EQ_STR(u->host, "::ffff:127.0.0.1");
}

TL_TEST(refuses_bad_urls) {
    ASSERT_STR_CONTAINS(parse_err("ftp://example.com/"), "must start with http:// or https://");
    ASSERT_STR_CONTAINS(parse_err("example.com/hook"), "must start with http:// or https://");
    ASSERT_STR_CONTAINS(parse_err("http:/example.com"), "must start with http:// or https://");
    ASSERT_STR_CONTAINS(parse_err("file:///etc/passwd"), "must start with");
    ASSERT_STR_CONTAINS(parse_err("gopher://127.0.0.1:6379/_"), "must start with");
    ASSERT_STR_CONTAINS(parse_err(""), "empty");
    ASSERT_STR_CONTAINS(parse_err("http://user:pass@example.com/"), "user credentials");
    ASSERT_STR_CONTAINS(parse_err("http://user@example.com/"), "user credentials");
    ASSERT_STR_CONTAINS(parse_err("http://example.com@127.0.0.1/"), "user credentials");
    ASSERT_STR_CONTAINS(parse_err("http:///path"), "no host");
    ASSERT_STR_CONTAINS(parse_err("http://"), "no host");
    ASSERT_STR_CONTAINS(parse_err("http://:8080/"), "no host");
    ASSERT_STR_CONTAINS(parse_err("http://[]/"), "no host");
    ASSERT_STR_CONTAINS(parse_err("http://exa mple.com/"), "spaces or control");
    ASSERT_STR_CONTAINS(parse_err("http://example.com/a b"), "spaces or control");
    ASSERT_STR_CONTAINS(parse_err("http://example.com/\r\nX-Injected: 1"), "control");
    ASSERT_STR_CONTAINS(parse_err("http://example.com/\t"), "control");
    ASSERT_STR_CONTAINS(parse_err("http://ex\xc3\xa4mple.com/"), "ASCII");
    ASSERT_STR_CONTAINS(parse_err("http://example.com:0/"),
                        "port must be a number from 1 to 65535");
    ASSERT_STR_CONTAINS(parse_err("http://example.com:65536/"), "1 to 65535");
    ASSERT_STR_CONTAINS(parse_err("http://example.com:123456/"), "1 to 65535");
    ASSERT_STR_CONTAINS(parse_err("http://example.com:80a/"), "1 to 65535");
    ASSERT_STR_CONTAINS(parse_err("http://example.com:-1/"), "1 to 65535");
    ASSERT_STR_CONTAINS(parse_err("http://example.com:/"), "empty port");
    ASSERT_STR_CONTAINS(parse_err("http://::1/"), "must be in brackets");
    ASSERT_STR_CONTAINS(parse_err("http://[::1/"), "without its ']'");
    ASSERT_STR_CONTAINS(parse_err("http://[::1]x/"), "after the IPv6 address");
    ASSERT_STR_CONTAINS(parse_err("http://[::1]:/"), "empty port");
    ASSERT_STR_CONTAINS(parse_err("http://[fe80::1%25eth0]/"), "zone id");
    ASSERT_STR_CONTAINS(parse_err("http://[127.0.0.1]/"), "not a valid IPv6");
    ASSERT_STR_CONTAINS(parse_err("http://[gggg::1]/"), "not a valid IPv6");
    ASSERT_STR_CONTAINS(parse_err("http://exa_mple..com/"), "empty label");
    ASSERT_STR_CONTAINS(parse_err("http://.example.com/"), "empty label");
    ASSERT_STR_CONTAINS(parse_err("http://example.com\\@127.0.0.1/"), "user credentials");
    ASSERT_STR_CONTAINS(parse_err("http://example.com\\.evil/"), "character that a host name");
    ASSERT_STR_CONTAINS(parse_err("http://127.0.0.%31/"), "character that a host name");
    /* IPv4 in the forms resolvers accept but that hide the address. */
    ASSERT_STR_CONTAINS(parse_err("http://127.1/"), "not a valid IPv4");
    ASSERT_STR_CONTAINS(parse_err("http://2130706433/"), "not a valid IPv4");
    ASSERT_STR_CONTAINS(parse_err("http://017700000001/"), "not a valid IPv4");
    ASSERT_STR_CONTAINS(parse_err("http://127.0.0.1./"), "not a valid IPv4");
    ASSERT_STR_CONTAINS(parse_err("http://1.2.3.256/"), "not a valid IPv4");
    ASSERT_STR_CONTAINS(parse_err("http://0x7f.0.0.1/"), "non-standard form");
    ASSERT_STR_CONTAINS(parse_err("http://0x7f000001/"), "non-standard form");
    ASSERT_STR_CONTAINS(parse_err("http://example.123/"), "neither a host name");

    /* Length: 2048 bytes pass, 2049 do not. */
    char url[GW_URL_MAX + 2];
    strcpy(url, "http://example.com/");
    size_t n = strlen(url);
    memset(url + n, 'a', GW_URL_MAX - n);
    url[GW_URL_MAX] = '\0';
    gw_url *u = parse_ok(url);
    ASSERT_EQ_INT(strlen(u->path), GW_URL_MAX - strlen("http://example.com"));
    url[GW_URL_MAX] = 'a';
    url[GW_URL_MAX + 1] = '\0';
    ASSERT_STR_CONTAINS(parse_err(url), "longer than 2048 bytes");
    /* A host name over 253 characters. */
    char host[300] = "http://";
    for (int i = 0; i < 5; i++)
        strcat(host, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.");
    strcat(host, "com/");
    ASSERT_STR_CONTAINS(parse_err(host), "longer than 253");
    char label[100] = "http://";
    for (int i = 0; i < 64; i++) strcat(label, "a");
    strcat(label, ".com/");
    ASSERT_STR_CONTAINS(parse_err(label), "longer than 63");
}

/* ------------------------------------------------------------ policy ---------------- */

TL_TEST(refuses_every_internal_class) {
    ASSERT_REFUSED("127.0.0.1", NULL, "loopback");
    ASSERT_REFUSED("127.255.255.254", NULL, "loopback");
    ASSERT_REFUSED("10.0.0.1", NULL, "private");
    ASSERT_REFUSED("172.16.5.4", NULL, "private");
    ASSERT_REFUSED("172.31.255.255", NULL, "private");
    ASSERT_REFUSED("192.168.1.1", NULL, "private");
    ASSERT_REFUSED("100.64.0.1", NULL, "carrier-grade NAT");
    ASSERT_REFUSED("100.127.255.255", NULL, "carrier-grade NAT");
    ASSERT_REFUSED("169.254.169.254", NULL, "cloud metadata");
    ASSERT_REFUSED("100.100.100.200", NULL, "cloud metadata");
    ASSERT_REFUSED("168.63.129.16", NULL, "cloud metadata");
    ASSERT_REFUSED("169.254.1.1", NULL, "link-local");
    ASSERT_REFUSED("0.0.0.0", NULL, "unspecified");
    ASSERT_REFUSED("0.1.2.3", NULL, "unspecified");
    ASSERT_REFUSED("192.0.0.8", NULL, "reserved");
    ASSERT_REFUSED("192.0.2.1", NULL, "reserved");
    ASSERT_REFUSED("198.18.0.1", NULL, "reserved");
    ASSERT_REFUSED("198.19.255.255", NULL, "reserved");
    ASSERT_REFUSED("198.51.100.7", NULL, "reserved");
    ASSERT_REFUSED("203.0.113.9", NULL, "reserved");
    ASSERT_REFUSED("224.0.0.1", NULL, "multicast");
    ASSERT_REFUSED("239.255.255.250", NULL, "multicast");
    ASSERT_REFUSED("240.0.0.1", NULL, "reserved");
    ASSERT_REFUSED("255.255.255.255", NULL, "broadcast");

    ASSERT_REFUSED("::", NULL, "unspecified");
    ASSERT_REFUSED("::1", NULL, "loopback");
    ASSERT_REFUSED("::127.0.0.1", NULL, "loopback");
    ASSERT_REFUSED("::8.8.8.8", NULL, "reserved");
    ASSERT_REFUSED("fe80::1", NULL, "link-local");
    ASSERT_REFUSED("febf:ffff::1", NULL, "link-local");
    ASSERT_REFUSED("fec0::1", NULL, "site-local");
    ASSERT_REFUSED("fc00::1", NULL, "unique-local");
    ASSERT_REFUSED("fd12:3456::1", NULL, "unique-local");
    ASSERT_REFUSED("fd00:ec2::254", NULL, "cloud metadata");
    ASSERT_REFUSED("ff02::1", NULL, "multicast");
    ASSERT_REFUSED("100::1", NULL, "reserved");
    ASSERT_REFUSED("2001:db8::1", NULL, "reserved");
    ASSERT_REFUSED("2001:0:4136:e378::1", NULL, "reserved");
    ASSERT_REFUSED("64:ff9b:1::1", NULL, "private");
    /* IPv6 that carries IPv4: judged by the IPv4 address. */
    ASSERT_REFUSED("::ffff:127.0.0.1", NULL, "loopback");
    ASSERT_REFUSED("::ffff:10.0.0.1", NULL, "private");
    ASSERT_REFUSED("::ffff:169.254.169.254", NULL, "cloud metadata");
    ASSERT_REFUSED("64:ff9b::127.0.0.1", NULL, "loopback");
    ASSERT_REFUSED("64:ff9b::192.168.0.1", NULL, "private");
    ASSERT_REFUSED("2002:7f00:1::1", NULL, "loopback");
    ASSERT_REFUSED("2002:a9fe:a9fe::", NULL, "cloud metadata");
    ASSERT_REFUSED("::ffff:0:7f00:1", NULL, "loopback"); /* IPv4-translated (SIIT) */
}

TL_TEST(admits_public_addresses) {
    ASSERT_ADMITTED("93.184.216.34", NULL);
    ASSERT_ADMITTED("8.8.8.8", NULL);
    ASSERT_ADMITTED("1.1.1.1", NULL);
    ASSERT_ADMITTED("100.63.255.255", NULL); /* just below CGNAT */
    ASSERT_ADMITTED("100.128.0.0", NULL);    /* just above */
    ASSERT_ADMITTED("172.15.255.255", NULL);
    ASSERT_ADMITTED("172.32.0.0", NULL);
    ASSERT_ADMITTED("169.253.255.255", NULL);
    ASSERT_ADMITTED("223.255.255.255", NULL);
    ASSERT_ADMITTED("2606:2800:220:1::1", NULL);
    ASSERT_ADMITTED("2001:4860:4860::8888", NULL);
    ASSERT_ADMITTED("::ffff:8.8.8.8", NULL);
    ASSERT_ADMITTED("64:ff9b::8.8.8.8", NULL);
    ASSERT_ADMITTED("2002:808:808::1", NULL);
    /* Anything but IPv4 and IPv6 is refused. */
    struct sockaddr un = {.sa_family = AF_UNIX};
    ASSERT_EQ_STR(gw_addr_refused(&un, NULL), "not an IP address");
    ASSERT_EQ_STR(gw_addr_refused(NULL, NULL), "not an IP address");
}

TL_TEST(allowlist_admits_what_it_lists) {
    gw_cidr_list *l = allow("127.0.0.0/8,10.0.0.0/8");
    ASSERT_EQ_INT(l->n, 2);
    ASSERT_ADMITTED("127.0.0.1", l);
    ASSERT_ADMITTED("10.1.2.3", l);
    ASSERT_ADMITTED("::ffff:127.0.0.1", l); /* the same socket destination */
    ASSERT_REFUSED("192.168.1.1", l, "private");
    ASSERT_REFUSED("::1", l, "loopback");
    ASSERT_REFUSED("169.254.169.254", l, "cloud metadata");
    ASSERT_TRUE(gw_cidr_list_contains(l, sa("10.255.255.255")));
    ASSERT_FALSE(gw_cidr_list_contains(l, sa("11.0.0.0")));
    ASSERT_FALSE(gw_cidr_list_contains(NULL, sa("10.0.0.1")));

    l = allow(" ::1 , fd00::/8,192.168.1.1 ");
    ASSERT_EQ_INT(l->n, 3);
    ASSERT_ADMITTED("::1", l);
    ASSERT_ADMITTED("fd12::1", l);
    ASSERT_REFUSED("fc00::1", l, "unique-local");
    ASSERT_ADMITTED("192.168.1.1", l);
    ASSERT_REFUSED("192.168.1.2", l, "private");
    ASSERT_REFUSED("127.0.0.1", l, "loopback");

    /* The empty list admits nothing extra. */
    l = allow("");
    ASSERT_EQ_INT(l->n, 0);
    ASSERT_REFUSED("127.0.0.1", l, "loopback");
    ASSERT_EQ_INT(allow("   ")->n, 0);
}

TL_TEST(allowlist_edge_prefixes) {
    gw_cidr_list *l = allow("0.0.0.0/0");
    ASSERT_ADMITTED("127.0.0.1", l);
    ASSERT_ADMITTED("255.255.255.255", l);
    ASSERT_REFUSED("::1", l, "loopback"); /* /0 of IPv4 is not IPv6 */
    l = allow("::/0");
    ASSERT_ADMITTED("::1", l);
    ASSERT_ADMITTED("fe80::1", l);
    ASSERT_ADMITTED("::ffff:10.0.0.1", l);
    ASSERT_REFUSED("10.0.0.1", l, "private");
    l = allow("10.1.2.3/32");
    ASSERT_ADMITTED("10.1.2.3", l);
    ASSERT_REFUSED("10.1.2.2", l, "private");
    ASSERT_REFUSED("10.1.2.4", l, "private");
    l = allow("10.1.2.3");
    ASSERT_EQ_INT(l->v[0].prefix, 32);
    l = allow("fe80::1");
    ASSERT_EQ_INT(l->v[0].prefix, 128);
    l = allow("192.168.0.0/17"); /* a prefix inside a byte */
    ASSERT_ADMITTED("192.168.0.1", l);
    ASSERT_ADMITTED("192.168.127.255", l);
    ASSERT_REFUSED("192.168.128.0", l, "private");
    l = allow("fe80::/11");
    ASSERT_ADMITTED("fe80::1", l);
    ASSERT_ADMITTED("fe9f::1", l);
    ASSERT_REFUSED("fea0::1", l, "link-local");
}

TL_TEST(allowlist_parse_errors) {
    ASSERT_STR_CONTAINS(allow_err("10.0.0.0/33"), "bad prefix length (0 to 32");
    ASSERT_STR_CONTAINS(allow_err("::/129"), "bad prefix length (0 to 128");
    ASSERT_STR_CONTAINS(allow_err("abc"), "'abc' is not an IP address or CIDR");
    ASSERT_STR_CONTAINS(allow_err("1.2.3.4/"), "bad prefix length");
    ASSERT_STR_CONTAINS(allow_err("1.2.3.4/x"), "bad prefix length");
    ASSERT_STR_CONTAINS(allow_err("1.2.3.4/-1"), "bad prefix length");
    ASSERT_STR_CONTAINS(allow_err("1.2.3.4/1000"), "bad prefix length");
    ASSERT_STR_CONTAINS(allow_err("1.2.3/24"), "not an IP address");
    ASSERT_STR_CONTAINS(allow_err("10.1.2.3/8"), "host bits set; did you mean 10.0.0.0/8?");
    ASSERT_STR_CONTAINS(allow_err("fd00::1/8"), "did you mean fd00::/8?");
    ASSERT_STR_CONTAINS(allow_err("10.0.0.0/8,,127.0.0.1"), "entry 2 is empty");
    ASSERT_STR_CONTAINS(allow_err("10.0.0.0/8,"), "entry 2 is empty");
    ASSERT_STR_CONTAINS(allow_err("10.0.0.0/8,abc"), "'abc'");
    ASSERT_STR_CONTAINS(allow_err("[::1]"), "not an IP address");
    ASSERT_STR_CONTAINS(
        allow_err("0123456789012345678901234567890123456789012345678901234567890123456789"),
        "too long");
    char many[1024] = "";
    for (int i = 0; i <= GW_CIDR_LIST_MAX; i++) strcat(many, i ? ",10.0.0.1" : "10.0.0.1");
    ASSERT_STR_CONTAINS(allow_err(many), "more than 32 entries");
}

/* ------------------------------------------------------------ submit-time check ----- */

TL_TEST(literal_check_at_submit) {
    ASSERT_EQ_STR(check("http://127.0.0.1:8080/hook", NULL),
                  "webhook URL points to a loopback address (127.0.0.1); refused");
    ASSERT_EQ_STR(check("http://[::1]/", NULL),
                  "webhook URL points to a loopback address (::1); refused");
    ASSERT_EQ_STR(check("http://169.254.169.254/latest/meta-data/", NULL),
                  "webhook URL points to a cloud metadata address (169.254.169.254); refused");
    ASSERT_EQ_STR(check("http://0.0.0.0/", NULL),
                  "webhook URL points to an unspecified address (0.0.0.0); refused");
    ASSERT_EQ_STR(check("http://[fc00::1]/", NULL),
                  "webhook URL points to a unique-local address (fc00::1); refused");
    ASSERT_EQ_STR(check("http://[::ffff:127.0.0.1]/", NULL),
                  "webhook URL points to a loopback address (::ffff:127.0.0.1); refused");
    ASSERT_STR_CONTAINS(check("http://10.0.0.1/", NULL), "a private address");
    ASSERT_STR_CONTAINS(check("http://172.16.5.4/", NULL), "a private address");
    ASSERT_STR_CONTAINS(check("http://192.168.1.1/", NULL), "a private address");
    ASSERT_STR_CONTAINS(check("http://[fe80::1]/", NULL), "a link-local address");
    ASSERT_STR_CONTAINS(check("http://224.0.0.1/", NULL), "a multicast address");
    ASSERT_NULL(check("http://93.184.216.34/", NULL));
    ASSERT_NULL(check("https://[2606:2800:220:1::1]/", NULL));
    ASSERT_NULL(check("http://8.8.8.8/", NULL));

    /* Names are not resolved here ... */
    ASSERT_NULL(check("https://hooks.example.com/x", NULL));
    ASSERT_NULL(check("https://localhost.example.com/x", NULL));
    ASSERT_NULL(check("https://mylocalhost/x", NULL));
    /* ... except localhost. */
    ASSERT_EQ_STR(check("http://localhost:9000/", NULL),
                  "webhook URL points to localhost (localhost); refused");
    ASSERT_STR_CONTAINS(check("http://LOCALHOST./", NULL), "points to localhost (localhost.)");
    ASSERT_STR_CONTAINS(check("http://api.localhost/", NULL), "points to localhost");
    ASSERT_STR_CONTAINS(check("http://a.b.localhost./", NULL), "points to localhost");

    /* The allowlist admits them. */
    gw_cidr_list *l = allow("127.0.0.0/8,10.0.0.0/8");
    ASSERT_NULL(check("http://127.0.0.1:8080/hook", l));
    ASSERT_NULL(check("http://10.1.2.3/", l));
    ASSERT_NULL(check("http://localhost:9000/", l));
    ASSERT_NULL(check("http://api.localhost/", l));
    ASSERT_STR_CONTAINS(check("http://192.168.1.1/", l), "a private address (192.168.1.1)");
    ASSERT_STR_CONTAINS(check("http://[::1]/", l), "loopback");
    ASSERT_NULL(check("http://localhost/", allow("::1")));
    ASSERT_STR_CONTAINS(check("http://localhost/", allow("10.0.0.0/8")), "localhost");
}

/* ------------------------------------------------------------ one table, both checks  */

enum { FORM = 1 }; /* the submit-time check refuses the URL's form before its address */

/* Every row's URL goes through the check a submit makes and the checks a delivery makes;
 * why is the reason gw_addr_refused gives for the address (NULL: admitted). */
static const struct verdict_row {
    const char *url, *allow, *why;
    int flags;
} verdicts[] = {
    /* IPv4 */
    {"http://127.0.0.1:8080/", NULL, "loopback", 0},
    {"http://10.0.0.1/", NULL, "private", 0},
    {"http://172.16.5.4/", NULL, "private", 0},
    {"http://192.168.1.1/", NULL, "private", 0},
    {"http://100.64.0.1/", NULL, "carrier-grade NAT", 0},
    {"http://169.254.169.254/latest/meta-data/", NULL, "cloud metadata", 0},
    {"http://100.100.100.200/", NULL, "cloud metadata", 0},
    {"http://169.254.1.1/", NULL, "link-local", 0},
    {"http://0.0.0.0/", NULL, "unspecified", 0},
    {"http://255.255.255.255/", NULL, "broadcast", 0},
    {"http://224.0.0.1/", NULL, "multicast", 0},
    {"http://240.0.0.1/", NULL, "reserved", 0},
    {"http://192.88.99.1/", NULL, "reserved", 0},
    {"http://198.18.0.1/", NULL, "reserved", 0},
    {"http://8.8.8.8/", NULL, NULL, 0},
    {"https://93.184.216.34:8443/hook", NULL, NULL, 0},
    /* IPv4 in the other spellings resolvers read (inet_aton): refused for their form at
     * submit and at delivery (the same parser), and their address judged all the same. */
    {"http://2130706433/", NULL, "loopback", FORM},
    {"http://0177.0.0.1/", NULL, "loopback", FORM},
    {"http://017700000001/", NULL, "loopback", FORM},
    {"http://0x7f.1/", NULL, "loopback", FORM},
    {"http://0X7F.0.0.1/", NULL, "loopback", FORM},
    {"http://0x7f000001/", NULL, "loopback", FORM},
    {"http://127.1/", NULL, "loopback", FORM},
    {"http://0/", NULL, "unspecified", FORM},
    {"http://2852039166/", NULL, "cloud metadata", FORM},
    {"http://0xa9.0xfe.0xa9.0xfe/", NULL, "cloud metadata", FORM},
    {"http://10.1/", NULL, "private", FORM},
    {"http://134744072/", NULL, NULL, FORM}, /* 8.8.8.8: a fine address, a hidden form */
    /* IPv6 */
    {"http://[::1]:19405/hook", NULL, "loopback", 0},
    {"http://[0:0:0:0:0:0:0:1]/", NULL, "loopback", 0},
    {"http://[::]/", NULL, "unspecified", 0},
    {"http://[fe80::1]/", NULL, "link-local", 0},
    {"http://[fec0::1]/", NULL, "site-local", 0},
    {"http://[fc00::1]/", NULL, "unique-local", 0},
    {"http://[fd00:ec2::254]/", NULL, "cloud metadata", 0},
    {"http://[ff02::1]/", NULL, "multicast", 0},
    {"http://[100::1]/", NULL, "reserved", 0},
    {"http://[2001:db8::1]/", NULL, "reserved", 0},
    {"http://[3fff::1]/", NULL, "reserved", 0},
    {"http://[2001:2::1]/", NULL, "reserved", 0},
    {"http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", NULL, "reserved", 0}, /* Teredo */
    {"https://[2606:2800:220:1::1]/", NULL, NULL, 0},
    {"http://[2001:4860:4860::8888]/", NULL, NULL, 0},
    /* IPv4-mapped, any spelling */
    {"http://[::ffff:127.0.0.1]/", NULL, "loopback", 0},
    {"http://[::ffff:7f00:1]/", NULL, "loopback", 0},
    {"http://[::FFFF:7F00:0001]/", NULL, "loopback", 0},
    {"http://[0:0:0:0:0:ffff:127.0.0.1]/", NULL, "loopback", 0},
    {"http://[0000:0000:0000:0000:0000:ffff:7f00:0001]/", NULL, "loopback", 0},
    {"http://[::ffff:169.254.169.254]/", NULL, "cloud metadata", 0},
    {"http://[::ffff:a9fe:a9fe]/", NULL, "cloud metadata", 0},
    {"http://[::ffff:10.0.0.1]/", NULL, "private", 0},
    {"http://[::ffff:0.0.0.0]/", NULL, "unspecified", 0},
    {"http://[::ffff:8.8.8.8]/", NULL, NULL, 0},
    /* IPv4-translated (SIIT) */
    {"http://[::ffff:0:7f00:1]/", NULL, "loopback", 0},
    {"http://[::ffff:0:127.0.0.1]/", NULL, "loopback", 0},
    {"http://[0:0:0:0:ffff:0:7f00:1]/", NULL, "loopback", 0},
    {"http://[::FFFF:0:A9FE:A9FE]/", NULL, "cloud metadata", 0},
    {"http://[::ffff:0:808:808]/", NULL, NULL, 0},
    /* IPv4-compatible (deprecated) */
    {"http://[::127.0.0.1]/", NULL, "loopback", 0},
    {"http://[::7f00:1]/", NULL, "loopback", 0},
    {"http://[::a9fe:a9fe]/", NULL, "cloud metadata", 0},
    {"http://[::0.0.0.2]/", NULL, "unspecified", 0},
    {"http://[::8.8.8.8]/", NULL, "reserved", 0},
    /* NAT64, well-known and local-use prefixes */
    {"http://[64:ff9b::127.0.0.1]/", NULL, "loopback", 0},
    {"http://[64:ff9b::7f00:1]/", NULL, "loopback", 0},
    {"http://[64:FF9B::A9FE:A9FE]/", NULL, "cloud metadata", 0},
    {"http://[64:ff9b::c0a8:1]/", NULL, "private", 0},
    {"http://[64:ff9b::8.8.8.8]/", NULL, NULL, 0},
    {"http://[64:ff9b:1::8.8.8.8]/", NULL, "private", 0},
    {"http://[64:ff9b:1:abcd::1]/", NULL, "private", 0},
    /* 6to4: the relay's IPv4 address, bits 16..47 */
    {"http://[2002:7f00:1::1]/", NULL, "loopback", 0},
    {"http://[2002:a9fe:a9fe::1]/", NULL, "cloud metadata", 0},
    {"http://[2002:a00:1:1::1]/", NULL, "private", 0},
    {"http://[2002:c058:6301::]/", NULL, "reserved", 0},
    {"http://[2002:808:808::1]/", NULL, NULL, 0},
    /* zone ids: refused for their form; the address without them judged as well */
    {"http://[fe80::1%25eth0]/", NULL, "link-local", FORM},
    {"http://[::1%25lo]/", NULL, "loopback", FORM},
    {"http://[::ffff:127.0.0.1%25lo]/", NULL, "loopback", FORM},
    /* the operator's allowlist admits the judged address, IPv4 or IPv6 */
    {"http://[::1]:19405/hook", "::1/128", NULL, 0},
    {"http://127.0.0.1/", "::1/128", "loopback", 0},
    {"http://[::1]/", "127.0.0.0/8", "loopback", 0},
    {"http://[::ffff:127.0.0.1]/", "127.0.0.0/8", NULL, 0},
    {"http://[::ffff:0:7f00:1]/", "127.0.0.0/8", NULL, 0},
    {"http://[::ffff:0:7f00:1]/", "::1/128", "loopback", 0},
    {"http://[64:ff9b::a01:203]/", "10.0.0.0/8", NULL, 0},
    {"http://[2002:a01:203::1]/", "10.0.0.0/8", NULL, 0},
    {"http://[64:ff9b::7f00:1]/", "64:ff9b::/96", NULL, 0},
    {"http://[fd00::1]/", "fd00::/8", NULL, 0},
    {"http://169.254.169.254/", "10.0.0.0/8", "cloud metadata", 0},
    {"http://[::ffff:a9fe:a9fe]/", "127.0.0.0/8", "cloud metadata", 0},
};

/* The URL's host as the system resolver (and curl) reads it, zone id decoded; NULL when
 * it reads no address there (a host name). */
static const struct sockaddr *resolver_reading(const char *url) {
    const char *h = strstr(url, "//") + 2;
    char host[256];
    size_t n;
    if (*h == '[') {
        h++;
        n = strcspn(h, "]");
    } else {
        n = strcspn(h, ":/");
    }
    ASSERT_TRUE(n < sizeof host);
    memcpy(host, h, n);
    host[n] = '\0';
    char *pct = strstr(host, "%25");
    if (pct) memmove(pct + 1, pct + 3, strlen(pct + 3) + 1);
    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    if (getaddrinfo(host, NULL, &hints, &res) != 0 && pct) {
        *pct = '\0'; /* a zone this machine lacks: the address alone */
        res = NULL;
        if (getaddrinfo(host, NULL, &hints, &res) != 0) res = NULL;
    }
    if (!res) return NULL;
    struct sockaddr_storage *ss = tl_alloc(sizeof *ss);
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return (const struct sockaddr *)ss;
}

/* The check a submit makes (gateway/jobs.c): NULL when admitted, else the 422 detail. */
static const char *submit_check(const char *url, const gw_cidr_list *l) {
    gw_url *u = tl_alloc(sizeof *u);
    char *err = tl_alloc(256);
    if (gw_url_parse(url, u, err, 256) < 0) return err;
    return gw_url_check_literal(u, l, err, 256) == 0 ? NULL : err;
}

static bool same_address(const struct sockaddr *a, const struct sockaddr *b) {
    if (a->sa_family != b->sa_family) return false;
    if (a->sa_family == AF_INET)
        return memcmp(&((const struct sockaddr_in *)a)->sin_addr,
                      &((const struct sockaddr_in *)b)->sin_addr, 4) == 0;
    return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                  &((const struct sockaddr_in6 *)b)->sin6_addr, 16) == 0;
}

TL_TEST(one_table_for_submit_and_delivery) {
    for (size_t i = 0; i < TL_COUNT(verdicts); i++) {
        const struct verdict_row *v = &verdicts[i];
        gw_cidr_list *l = allow(v->allow ? v->allow : "");
        tl_log("%s allow=%s: want %s%s", v->url, v->allow ? v->allow : "-",
               v->why ? v->why : "admitted", v->flags & FORM ? " (form refused)" : "");

        /* At submit. */
        const char *sub = submit_check(v->url, l);
        if (v->flags & FORM) {
            if (!sub) FAILF("%s: admitted at submit; want its form refused", v->url);
            if (!strstr(sub, "IPv4") && !strstr(sub, "zone id"))
                FAILF("%s: refused at submit as '%s'; want its form refused", v->url, sub);
        } else if (v->why) {
            if (!sub) FAILF("%s: admitted at submit; want refused as %s", v->url, v->why);
            ASSERT_STR_CONTAINS(sub, tl_printf("%s address", v->why));
        } else if (sub) {
            FAILF("%s: refused at submit (%s); want admitted", v->url, sub);
        }

        /* At delivery: the stored URL gets the same parse and literal check (webhooks.c
         * check_and_post), then the address connected to is judged by gw_addr_refused
         * (on_resolved for a name's addresses, curl_loop's socket callback for every
         * connection). That address is the host as the resolver and curl read it. */
        const struct sockaddr *sa = resolver_reading(v->url);
        if (!sa) FAILF("%s: the resolver reads no address in it", v->url);
        const char *why = gw_addr_refused(sa, l);
        if ((why == NULL) != (v->why == NULL) || (why && strcmp(why, v->why) != 0))
            FAILF("%s: address judged %s at delivery; want %s", v->url, why ? why : "admitted",
                  v->why ? v->why : "admitted");
        if (!(v->flags & FORM)) {
            gw_url *u = parse_ok(v->url);
            ASSERT_TRUE(u->host_is_ip);
            if (!same_address((const struct sockaddr *)&u->addr, sa))
                FAILF("%s: the gateway's parse and the resolver's differ", v->url);
        }
    }
}

/* ------------------------------------------------------------ pinning --------------- */

static const char *pin_of(const char *url, const char *addr) {
    char *out = tl_alloc(GW_URL_MAX + 64);
    ASSERT_EQ_INT(gw_url_pin(parse_ok(url), sa(addr), out, GW_URL_MAX + 64), 0);
    return out;
}

TL_TEST(pin_strings) {
    ASSERT_EQ_STR(pin_of("https://hooks.example.com/x", "192.0.2.7"),
                  "hooks.example.com:443:192.0.2.7");
    ASSERT_EQ_STR(pin_of("http://Hooks.Example.com:8080/x", "2001:db8::7"),
                  "hooks.example.com:8080:[2001:db8::7]");
    ASSERT_EQ_STR(pin_of("http://hook.test:19405/", "::1"), "hook.test:19405:[::1]");
    ASSERT_EQ_STR(pin_of("http://hook.test:19405/", "::ffff:127.0.0.1"),
                  "hook.test:19405:[::ffff:127.0.0.1]");
    /* curl matches the name as written, trailing dot included. */
    ASSERT_EQ_STR(pin_of("http://hook.test.:80/", "127.0.0.1"), "hook.test.:80:127.0.0.1");
    /* An IP literal is not pinned: curl resolves nothing for it, and libcurl 7.88 refuses
     * every entry whose host is an IPv6 literal. */
    ASSERT_EQ_STR(pin_of("http://[::1]:19405/hook", "::1"), "");
    ASSERT_EQ_STR(pin_of("http://[2606:2800:220:1::1]/", "2606:2800:220:1::1"), "");
    ASSERT_EQ_STR(pin_of("http://93.184.216.34/", "93.184.216.34"), "");

    char out[32] = "x";
    struct sockaddr un = {.sa_family = AF_UNIX};
    ASSERT_EQ_INT(gw_url_pin(parse_ok("http://hook.test/"), &un, out, sizeof out), -1);
    ASSERT_EQ_STR(out, "");
    ASSERT_EQ_INT(gw_url_pin(parse_ok("http://a-rather-long-host-name.example.com/"),
                             sa("2001:db8::7"), out, sizeof out),
                  -1);
    ASSERT_EQ_STR(out, "");
}

typedef struct posted {
    int calls;
    long status;
    char error[512];
} posted;

static void on_posted(const gw_fetch_result *res, void *arg) {
    posted *p = arg;
    p->calls++;
    p->status = res->status;
    snprintf(p->error, sizeof p->error, "%s", res->error);
}

static int allow_by_policy(const struct sockaddr *a, void *arg) {
    return gw_addr_refused(a, arg) == NULL;
}

typedef struct curl_env {
    struct event_base *base;
    gw_curl *c;
} curl_env;

static void curl_env_free(void *p) {
    curl_env *e = p;
    gw_curl_free(e->c);
    event_base_free(e->base);
    free(e);
}

/* POSTs url as a delivery does (the pin gw_url_pin makes for addr, every socket judged by
 * the policy with allow l) and runs the loop until it ends; returns the HTTP status. */
static long deliver(curl_env *e, const char *url, const char *addr, gw_cidr_list *l) {
    char pin[GW_URL_MAX + 64];
    ASSERT_EQ_INT(gw_url_pin(parse_ok(url), sa(addr), pin, sizeof pin), 0);
    posted *p = tl_alloc(sizeof *p);
    gw_fetch f = {.url = url,
                  .body = "{}",
                  .body_len = 2,
                  .pin = pin[0] ? pin : NULL,
                  .timeout_ms = 10000,
                  .allow_addr = allow_by_policy,
                  .allow_arg = l};
    ASSERT_EQ_INT(gw_curl_post(e->c, &f, on_posted, p), 0);
    int64_t end = tl_now_ms() + 15000;
    while (!p->calls && tl_now_ms() < end) event_base_loop(e->base, EVLOOP_ONCE);
    ASSERT_EQ_INT(p->calls, 1);
    tl_log("%s pinned '%s' -> %ld %s", url, pin, p->status, p->error);
    return p->status;
}

TL_TEST(pinned_delivery_reaches_ipv4_and_ipv6_receivers) {
    tl_receiver *rx6 = tl_receiver_start_ipv6(0), *rx4 = tl_receiver_start(0);
    curl_env *e = calloc(1, sizeof *e);
    ASSERT_NOT_NULL(e);
    e->base = event_base_new();
    ASSERT_NOT_NULL(e->base);
    e->c = gw_curl_new(e->base);
    ASSERT_NOT_NULL(e->c);
    tl_defer(curl_env_free, e);
    gw_cidr_list *l = allow("::1/128,127.0.0.1/32");
    int p6 = tl_receiver_port(rx6), p4 = tl_receiver_port(rx4);

    /* An IPv6 literal (no pin), and a name pinned to ::1: the name resolves nowhere, so
     * only the pin can bring the request to the receiver. */
    ASSERT_EQ_INT(deliver(e, tl_receiver_url(rx6, "/literal"), "::1", l), 200);
    ASSERT_EQ_INT(deliver(e, tl_printf("http://hook.test:%d/name6", p6), "::1", l), 200);
    ASSERT_EQ_INT(deliver(e, tl_printf("http://HOOK.test.:%d/dot6", p6), "::1", l), 200);
    ASSERT_EQ_INT(tl_receiver_count(rx6), 3);
    ASSERT_EQ_STR(tl_receiver_get(rx6, 0)->path, "/literal");
    ASSERT_EQ_STR(tl_receiver_get(rx6, 1)->path, "/name6");
    ASSERT_EQ_STR(tl_received_header(tl_receiver_get(rx6, 1), "Host"),
                  tl_printf("hook.test:%d", p6));
    ASSERT_EQ_STR(tl_receiver_get(rx6, 2)->path, "/dot6");

    /* IPv4: a literal and a name pinned to 127.0.0.1. */
    ASSERT_EQ_INT(deliver(e, tl_receiver_url(rx4, "/literal4"), "127.0.0.1", l), 200);
    ASSERT_EQ_INT(deliver(e, tl_printf("http://hook.test:%d/name4", p4), "127.0.0.1", l), 200);
    ASSERT_EQ_INT(tl_receiver_count(rx4), 2);

    /* The socket check still refuses what the allowlist does not admit (a receiver of
     * its own: a kept-alive connection to rx6 would be reused without a new check). */
    tl_receiver *other6 = tl_receiver_start_ipv6(0);
    ASSERT_EQ_INT(deliver(e, tl_receiver_url(other6, "/refused"), "::1", allow("127.0.0.1/32")), 0);
    ASSERT_EQ_INT(tl_receiver_count(other6), 0);
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(parses_good_urls),
        TL_CASE(refuses_bad_urls),
        TL_CASE(refuses_every_internal_class),
        TL_CASE(admits_public_addresses),
        TL_CASE(allowlist_admits_what_it_lists),
        TL_CASE(allowlist_edge_prefixes),
        TL_CASE(allowlist_parse_errors),
        TL_CASE(literal_check_at_submit),
        TL_CASE(one_table_for_submit_and_delivery),
        TL_CASE(pin_strings),
        TL_CASE(pinned_delivery_reaches_ipv4_and_ipv6_receivers),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
