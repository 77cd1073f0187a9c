/* ssrf.c: the webhook URL form, the operator's allowlist and the address policy (ssrf.h). */
#include "ssrf.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------ address bits ---------- */

/* The address bytes of sa (4 or 16) and its family; 0 for any other family. */
static int addr_bytes(const struct sockaddr *sa, const unsigned char **bytes) {
    if (!sa) return 0;
    if (sa->sa_family == AF_INET) {
        *bytes = (const unsigned char *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr;
        return AF_INET;
    }
    if (sa->sa_family == AF_INET6) {
        *bytes = (const unsigned char *)&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
        return AF_INET6;
    }
    return 0;
}

/* Whether the first prefix bits of a and net are equal. */
static bool prefix_match(const unsigned char *a, const unsigned char *net, int prefix) {
    int whole = prefix / 8, rest = prefix % 8;
    if (memcmp(a, net, (size_t)whole) != 0) return false;
    if (rest == 0) return true;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (a[whole] & mask) == (net[whole] & mask);
}

/* ------------------------------------------------------------ URLs ------------------ */

#define URL_ERR(...) (snprintf(err, errlen, __VA_ARGS__), -1)

/* A DNS name as a URL may carry it: labels of letters, digits, '-' and '_' (seen in
 * service records), 1..63 each, one optional trailing '.'. */
static int check_host_name(const char *h, char *err, size_t errlen) {
    size_t n = strlen(h);
    if (n > 253) return URL_ERR("webhook URL host is longer than 253 characters");
    size_t label = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)h[i];
        if (c == '.') {
            if (label == 0)
                return URL_ERR("webhook URL host '%.64s' has an empty label (\"..\" or a "
                               "leading '.')",
                               h);
            label = 0;
            continue;
        }
        if (!isalnum(c) && c != '-' && c != '_')
            return URL_ERR("webhook URL host '%.64s' has a character that a host name cannot "
                           "have (letters, digits, '-', '_' and '.')",
                           h);
        if (++label > 63)
            return URL_ERR("webhook URL host '%.64s' has a label longer than 63 characters", h);
    }
    /* Resolvers read all-numeric hosts as IPv4 in any base ("127.1", "2130706433",
     * "0x7f.0.0.1"); only the dotted quad is unambiguous. */
    struct in_addr a4;
    bool numeric = strspn(h, "0123456789.") == n;
    if (numeric && inet_pton(AF_INET, h, &a4) != 1)
        return URL_ERR("webhook URL host '%.64s' is not a valid IPv4 address (write four "
                       "decimal numbers, a.b.c.d)",
                       h);
    if (!numeric && inet_aton(h, &a4) != 0)
        return URL_ERR("webhook URL host '%.64s' is an IPv4 address in a non-standard form "
                       "(write four decimal numbers, a.b.c.d)",
                       h);
    /* Nor is a name whose last label is a number a name (no top-level domain is). */
    const char *end = h + n - (h[n - 1] == '.' ? 1 : 0);
    const char *last = end;
    while (last > h && last[-1] != '.') last--;
    if (!numeric && last < end && strspn(last, "0123456789") >= (size_t)(end - last))
        return URL_ERR("webhook URL host '%.64s' is neither a host name nor an IPv4 address", h);
    return 0;
}

int gw_url_parse(const char *url, gw_url *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    if (!url || !*url) return URL_ERR("webhook URL is empty");
    size_t len = strnlen(url, GW_URL_MAX + 1);
    if (len > GW_URL_MAX) return URL_ERR("webhook URL is longer than %d bytes", GW_URL_MAX);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)url[i];
        if (c <= 0x20 || c == 0x7f)
            return URL_ERR("webhook URL must not contain spaces or control characters "
                           "(percent-encode them)");
        if (c >= 0x80)
            return URL_ERR("webhook URL must be ASCII (percent-encode the path; write an "
                           "international host name in punycode, xn--)");
    }

    const char *auth;
    if (strncasecmp(url, "http://", 7) == 0) {
        strcpy(out->scheme, "http");
        out->port = 80;
        auth = url + 7;
    } else if (strncasecmp(url, "https://", 8) == 0) {
        strcpy(out->scheme, "https");
        out->port = 443;
        auth = url + 8;
    } else {
        return URL_ERR("webhook URL must start with http:// or https://");
    }

    size_t authlen = strcspn(auth, "/?#");
    const char *auth_end = auth + authlen;
    if (memchr(auth, '@', authlen))
        return URL_ERR("webhook URL must not contain user credentials (user:pass@host)");
    if (authlen == 0) return URL_ERR("webhook URL has no host");

    const char *host = auth, *host_end, *port = NULL;
    if (*auth == '[') {
        const char *rb = memchr(auth, ']', authlen);
        if (!rb) return URL_ERR("webhook URL has a '[' without its ']' in the host");
        host = auth + 1;
        host_end = rb;
        if (rb + 1 < auth_end) {
            if (rb[1] != ':')
                return URL_ERR("webhook URL has characters after the IPv6 address's ']' that "
                               "are not a :port");
            port = rb + 2;
        }
    } else {
        const char *colon = memchr(auth, ':', authlen);
        host_end = colon ? colon : auth_end;
        if (colon) {
            if (memchr(colon + 1, ':', (size_t)(auth_end - colon - 1)))
                return URL_ERR("webhook URL host has several ':'; an IPv6 address must be in "
                               "brackets, as in http://[2001:db8::1]:8080/");
            port = colon + 1;
        }
    }
    size_t hostlen = (size_t)(host_end - host);
    if (hostlen == 0) return URL_ERR("webhook URL has no host");
    if (hostlen >= sizeof out->host)
        return URL_ERR("webhook URL host is longer than 253 characters");
    for (size_t i = 0; i < hostlen; i++) out->host[i] = (char)tolower((unsigned char)host[i]);
    out->host[hostlen] = '\0';

    if (port) {
        size_t plen = (size_t)(auth_end - port);
        if (plen == 0) return URL_ERR("webhook URL has an empty port after ':'");
        long p = 0;
        bool ok = plen <= 5 && strspn(port, "0123456789") >= plen;
        if (ok) p = strtol(port, NULL, 10);
        if (!ok || p < 1 || p > 65535)
            return URL_ERR("webhook URL port must be a number from 1 to 65535");
        out->port = (int)p;
    }

    if (*auth == '[') {
        if (strchr(out->host, '%'))
            return URL_ERR("webhook URL must not use an IPv6 zone id ('%%' in the address)");
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&out->addr;
        if (inet_pton(AF_INET6, out->host, &s6->sin6_addr) != 1)
            return URL_ERR("webhook URL host [%.64s] is not a valid IPv6 address", out->host);
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)out->port);
        out->host_is_ip = true;
    } else {
        if (check_host_name(out->host, err, errlen) < 0) return -1;
        struct sockaddr_in *s4 = (struct sockaddr_in *)&out->addr;
        if (inet_pton(AF_INET, out->host, &s4->sin_addr) == 1) {
            s4->sin_family = AF_INET;
            s4->sin_port = htons((uint16_t)out->port);
            out->host_is_ip = true;
        }
    }

    /* The fragment stays with the client: HTTP never sends it. */
    size_t pathlen = strcspn(auth_end, "#");
    if (pathlen == 0 || auth_end[0] == '?') out->path[0] = '/';
    memcpy(out->path + (out->path[0] ? 1 : 0), auth_end, pathlen);
    return 0;
}

/* ------------------------------------------------------------ allowlist ------------- */

#define CIDR_ERR(...) (snprintf(err, errlen, __VA_ARGS__), -1)

static int parse_cidr(const char *e, gw_cidr *c, char *err, size_t errlen) {
    char addr[INET6_ADDRSTRLEN];
    const char *slash = strchr(e, '/');
    size_t alen = slash ? (size_t)(slash - e) : strlen(e);
    memset(c, 0, sizeof *c);
    if (alen >= sizeof addr)
        return CIDR_ERR("allowlist entry '%s' is not an IP address or CIDR (such as "
                        "10.0.0.0/8 or fd00::/8)",
                        e);
    memcpy(addr, e, alen);
    addr[alen] = '\0';
    int max;
    if (inet_pton(AF_INET, addr, c->net) == 1) {
        c->family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, addr, c->net) == 1) {
        c->family = AF_INET6;
        max = 128;
    } else {
        return CIDR_ERR("allowlist entry '%s' is not an IP address or CIDR (such as "
                        "10.0.0.0/8 or fd00::/8)",
                        e);
    }
    c->prefix = max;
    if (slash) {
        const char *p = slash + 1;
        size_t plen = strlen(p);
        bool ok = plen >= 1 && plen <= 3 && strspn(p, "0123456789") == plen;
        if (ok) c->prefix = atoi(p);
        if (!ok || c->prefix > max)
            return CIDR_ERR("allowlist entry '%s' has a bad prefix length (0 to %d after '/')", e,
                            max);
    }
    unsigned char masked[16];
    memset(masked, 0, sizeof masked);
    memcpy(masked, c->net, (size_t)(c->prefix / 8));
    if (c->prefix % 8)
        masked[c->prefix / 8] = (unsigned char)(c->net[c->prefix / 8] &
                                                (0xff << (8 - c->prefix % 8)));
    if (memcmp(masked, c->net, sizeof masked) != 0) {
        char net[INET6_ADDRSTRLEN];
        inet_ntop(c->family, masked, net, sizeof net);
        return CIDR_ERR("allowlist entry '%s' has host bits set; did you mean %s/%d?", e, net,
                        c->prefix);
    }
    return 0;
}

int gw_cidr_list_parse(const char *text, gw_cidr_list *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    if (!text || strspn(text, " \t") == strlen(text)) return 0;
    size_t index = 0;
    for (const char *p = text;; p++) {
        size_t n = strcspn(p, ",");
        const char *s = p, *e = p + n;
        while (s < e && (*s == ' ' || *s == '\t')) s++;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t')) e--;
        index++;
        if (s == e) {
            memset(out, 0, sizeof *out);
            return CIDR_ERR("allowlist entry %zu is empty (a stray ',')", index);
        }
        char entry[64];
        if ((size_t)(e - s) >= sizeof entry) {
            memset(out, 0, sizeof *out);
            return CIDR_ERR("allowlist entry %zu ('%.24s...') is too long for a CIDR", index, s);
        }
        memcpy(entry, s, (size_t)(e - s));
        entry[e - s] = '\0';
        if (out->n == GW_CIDR_LIST_MAX) {
            memset(out, 0, sizeof *out);
            return CIDR_ERR("allowlist has more than %d entries", GW_CIDR_LIST_MAX);
        }
        if (parse_cidr(entry, &out->v[out->n], err, errlen) < 0) {
            memset(out, 0, sizeof *out);
            return -1;
        }
        out->n++;
        p += n;
        if (!*p) break;
    }
    return 0;
}

static bool list_contains(const gw_cidr_list *l, int family, const unsigned char *a) {
    for (size_t i = 0; l && i < l->n; i++)
        if (l->v[i].family == family && prefix_match(a, l->v[i].net, l->v[i].prefix)) return true;
    return false;
}

/* IPv6 forms that carry an IPv4 address, and where it sits. A connection to one of them
 * reaches (or is translated or tunnelled to) that IPv4 address, so it is judged as it. */
typedef struct embedding {
    unsigned char net[16];
    int prefix;
    int at; /* byte offset of the IPv4 address */
} embedding;

/* The ranges do not overlap; IPv4-compatible stays last (EMBED_COMPATIBLE). */
static const embedding v4_embeddings[] = {
    {{[10] = 0xff, [11] = 0xff}, 96, 12}, /* ::ffff:0:0/96 IPv4-mapped */
    {{[8] = 0xff, [9] = 0xff}, 96, 12},   /* ::ffff:0:0:0/96 IPv4-translated (SIIT) */
    {{0x00, 0x64, 0xff, 0x9b}, 96, 12},   /* 64:ff9b::/96 NAT64 */
    {{0x20, 0x02}, 16, 2},                /* 2002::/16 6to4: the 6to4 router's address */
    {{0}, 96, 12},                        /* ::/96 IPv4-compatible (deprecated) */
};

#define EMBED_COMPATIBLE (sizeof v4_embeddings / sizeof *v4_embeddings - 1)

/* The embedding a carries its IPv4 address in (its index; *v4 points at the address), or
 * -1. "::" and "::1" are not IPv4-compatible addresses: they are themselves. */
static int embedded_v4(const unsigned char *a, const unsigned char **v4) {
    static const unsigned char loopback[16] = {[15] = 1};
    if (memcmp(a, loopback, 15) == 0 && a[15] <= 1) return -1;
    for (size_t i = 0; i < sizeof v4_embeddings / sizeof *v4_embeddings; i++) {
        if (prefix_match(a, v4_embeddings[i].net, v4_embeddings[i].prefix)) {
            *v4 = a + v4_embeddings[i].at;
            return (int)i;
        }
    }
    return -1;
}

bool gw_cidr_list_contains(const gw_cidr_list *l, const struct sockaddr *sa) {
    const unsigned char *a, *v4;
    int family = addr_bytes(sa, &a);
    if (!family || !l) return false;
    if (list_contains(l, family, a)) return true;
    return family == AF_INET6 && embedded_v4(a, &v4) >= 0 && list_contains(l, AF_INET, v4);
}

/* ------------------------------------------------------------ policy ---------------- */

typedef struct rule {
    unsigned char net[16];
    int prefix;
    const char *reason;
} rule;

/* First match wins: single addresses before the networks that hold them. */
static const rule v4_rules[] = {
    {{169, 254, 169, 254}, 32, "cloud metadata"}, /* AWS, GCP, Azure, OCI, ... */
    {{100, 100, 100, 200}, 32, "cloud metadata"}, /* Alibaba Cloud */
    {{168, 63, 129, 16}, 32, "cloud metadata"},   /* Azure WireServer (a public address) */
    {{255, 255, 255, 255}, 32, "broadcast"},
    {{0}, 8, "unspecified"}, /* Linux connects 0.0.0.0 to the local host */
    {{10}, 8, "private"},
    {{100, 64}, 10, "carrier-grade NAT"},
    {{127}, 8, "loopback"},
    {{169, 254}, 16, "link-local"},
    {{172, 16}, 12, "private"},
    {{192, 0, 0}, 24, "reserved"},   /* IETF protocol assignments */
    {{192, 0, 2}, 24, "reserved"},   /* documentation */
    {{192, 88, 99}, 24, "reserved"}, /* 6to4 relay anycast, deprecated */
    {{192, 168}, 16, "private"},
    {{198, 18}, 15, "reserved"},      /* benchmarking */
    {{198, 51, 100}, 24, "reserved"}, /* documentation */
    {{203, 0, 113}, 24, "reserved"},  /* documentation */
    {{224}, 4, "multicast"},
    {{240}, 4, "reserved"},
};

/* For IPv6 addresses that carry no IPv4 address (v4_embeddings). */
static const rule v6_rules[] = {
    {{0xfd, 0x00, 0x0e, 0xc2, [14] = 0x02, [15] = 0x54}, 128, "cloud metadata"}, /* AWS */
    {{0}, 128, "unspecified"},
    {{[15] = 1}, 128, "loopback"},
    {{0x01, 0x00}, 64, "reserved"},                         /* discard only */
    {{0x20, 0x01, 0x00, 0x02, 0x00, 0x00}, 48, "reserved"}, /* benchmarking */
    {{0x20, 0x01, 0x00, 0x10}, 28, "reserved"},             /* ORCHID, deprecated */
    {{0x20, 0x01, 0x00, 0x20}, 28, "reserved"},             /* ORCHIDv2, not routed */
    {{0x20, 0x01, 0x0d, 0xb8}, 32, "reserved"},             /* documentation */
    {{0x20, 0x01, 0x00, 0x00}, 32, "reserved"}, /* Teredo: the IPv4 inside is obfuscated */
    {{0x3f, 0xff, 0x00}, 20, "reserved"},       /* documentation */
    {{0x00, 0x64, 0xff, 0x9b, 0x00, 0x01}, 48, "private"}, /* local-use NAT64 */
    {{0xfc}, 7, "unique-local"},
    {{0xfe, 0x80}, 10, "link-local"},
    {{0xfe, 0xc0}, 10, "site-local"},
    {{0xff}, 8, "multicast"},
};

static const char *match_rules(const rule *rules, size_t n, const unsigned char *a) {
    for (size_t i = 0; i < n; i++)
        if (prefix_match(a, rules[i].net, rules[i].prefix)) return rules[i].reason;
    return NULL;
}

static const char *v4_refused(const unsigned char *a) {
    return match_rules(v4_rules, sizeof v4_rules / sizeof *v4_rules, a);
}

/* The one rule set: the submit-time check (gw_url_check_literal), the delivery's check of
 * every resolved address and curl's check of every socket all come here. */
const char *gw_addr_refused(const struct sockaddr *sa, const gw_cidr_list *allow) {
    const unsigned char *a, *v4;
    int family = addr_bytes(sa, &a);
    if (!family) return "not an IP address";
    if (gw_cidr_list_contains(allow, sa)) return NULL;
    if (family == AF_INET) return v4_refused(a);
    int e = embedded_v4(a, &v4);
    if (e < 0) return match_rules(v6_rules, sizeof v6_rules / sizeof *v6_rules, a);
    const char *why = v4_refused(v4);
    /* An IPv4-compatible address with a public IPv4 inside still goes out through a
     * tunnel (sit) if it goes anywhere; RFC 4291 deprecated the form. */
    if (!why && (size_t)e == EMBED_COMPATIBLE) why = "reserved";
    return why;
}

static bool is_localhost(const char *host) {
    size_t n = strlen(host);
    if (n > 0 && host[n - 1] == '.') n--;
    static const char name[] = "localhost";
    size_t k = sizeof name - 1;
    if (n < k || strncmp(host + n - k, name, k) != 0) return false;
    return n == k || host[n - k - 1] == '.';
}

int gw_url_check_literal(const gw_url *u, const gw_cidr_list *allow, char *err, size_t errlen) {
    if (u->host_is_ip) {
        const char *why = gw_addr_refused((const struct sockaddr *)&u->addr, allow);
        if (!why) return 0;
        bool an = strchr("aeio", why[0]) || strncmp(why, "unspecified", 11) == 0;
        snprintf(err, errlen, "webhook URL points to %s %s address (%s); refused", an ? "an" : "a",
                 why, u->host);
        return -1;
    }
    if (is_localhost(u->host)) {
        struct sockaddr_in lo4 = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        struct sockaddr_in6 lo6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
        if (gw_cidr_list_contains(allow, (const struct sockaddr *)&lo4) ||
            gw_cidr_list_contains(allow, (const struct sockaddr *)&lo6))
            return 0;
        snprintf(err, errlen, "webhook URL points to localhost (%.64s); refused", u->host);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ pinning --------------- */

int gw_url_pin(const gw_url *u, const struct sockaddr *sa, char *out, size_t outlen) {
    if (outlen == 0) return -1;
    out[0] = '\0';
    if (u->host_is_ip) return 0;
    const unsigned char *a;
    int family = addr_bytes(sa, &a);
    char ip[INET6_ADDRSTRLEN];
    if (!family || !inet_ntop(family, a, ip, sizeof ip)) return -1;
    int n = snprintf(out, outlen, family == AF_INET6 ? "%s:%d:[%s]" : "%s:%d:%s", u->host, u->port,
                     ip);
    if (n < 0 || (size_t)n >= outlen) {
        out[0] = '\0';
        return -1;
    }
    return 0;
}
