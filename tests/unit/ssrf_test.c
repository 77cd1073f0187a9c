/* ssrf_test: the webhook URL form, the allowlist and the address policy (gateway/ssrf.c). */
#include <arpa/inet.h>
#include <string.h>

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

#define ASSERT_REFUSED(addr, allow, why)                                                   \
    do {                                                                                   \
        const char *r__ = reason((addr), (allow));                                         \
        if (!r__) FAILF("address %s was admitted; want refused as %s", (addr), (why));     \
        ASSERT_EQ_STR(r__, (why));                                                         \
    } while (0)
#define ASSERT_ADMITTED(addr, allow)                                                       \
    do {                                                                                   \
        const char *r__ = reason((addr), (allow));                                         \
        if (r__) FAILF("address %s was refused as %s; want admitted", (addr), r__);        \
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
    u = parse_ok("https://hooks.example.com.:1/a@b");  /* '@' in the path is fine */
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
    ASSERT_STR_CONTAINS(parse_err("http://example.com:0/"), "port must be a number from 1 to 65535");
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
    for (int i = 0; i < 5; i++) strcat(host, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.");
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
    ASSERT_REFUSED("::127.0.0.1", NULL, "reserved");
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
}

TL_TEST(admits_public_addresses) {
    ASSERT_ADMITTED("93.184.216.34", NULL);
    ASSERT_ADMITTED("8.8.8.8", NULL);
    ASSERT_ADMITTED("1.1.1.1", NULL);
    ASSERT_ADMITTED("100.63.255.255", NULL);  /* just below CGNAT */
    ASSERT_ADMITTED("100.128.0.0", NULL);     /* just above */
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
    ASSERT_STR_CONTAINS(allow_err("0123456789012345678901234567890123456789012345678901234567890123456789"),
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
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
