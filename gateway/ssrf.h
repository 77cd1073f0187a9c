/* ssrf.h: which webhook URLs and addresses the gateway may contact. Pure: no DNS, no I/O.
 *
 * Two checks guard a webhook, and one rule set (gw_addr_refused) decides both:
 *   at submit   gw_url_parse + gw_url_check_literal: the URL's form, and its host when it
 *               is an IP literal (or "localhost"), so an obvious mistake is a 422 at once;
 *   at delivery the same gw_url_parse + gw_url_check_literal on the stored URL, then
 *               gw_addr_refused on every address a host name resolves to, and again on
 *               every socket curl opens (a name may resolve anywhere, and differently on
 *               each lookup); the checked address is pinned (gw_url_pin).
 * An operator's allowlist (gw_cidr_list) admits addresses that would be refused, such as a
 * receiver on the same private network.
 *
 * Refused (reason in quotes, as gw_addr_refused returns it):
 *   IPv4  0.0.0.0/8 "unspecified"   10/8, 172.16/12, 192.168/16 "private"
 *         100.64/10 "carrier-grade NAT"   127/8 "loopback"   169.254/16 "link-local"
 *         169.254.169.254, 100.100.100.200, 168.63.129.16 "cloud metadata"
 *         192.0.0/24, 192.0.2/24, 192.88.99/24, 198.18/15, 198.51.100/24, 203.0.113/24,
 *         240/4 "reserved"   224/4 "multicast"   255.255.255.255 "broadcast"
 *   IPv6  ::/128 "unspecified"   ::1 "loopback"   fe80::/10 "link-local"
 *         fec0::/10 "site-local"   fc00::/7 "unique-local"   fd00:ec2::254 "cloud metadata"
 *         ff00::/8 "multicast"   64:ff9b:1::/48 "private" (local-use NAT64)
 *         100::/64, 2001::/32 (Teredo), 2001:2::/48, 2001:10::/28, 2001:20::/28,
 *         2001:db8::/32, 3fff::/20 "reserved"
 *   IPv6 that carries an IPv4 address is judged as that IPv4 address, by the IPv4 rules
 *   and by the allowlist's IPv4 entries: ::ffff:0:0/96 (IPv4-mapped), ::ffff:0:0:0/96
 *   (IPv4-translated, SIIT), 64:ff9b::/96 (NAT64), 2002::/16 (6to4: bits 16..47), and
 *   ::/96 (IPv4-compatible, other than :: and ::1), which is "reserved" even when its IPv4
 *   address is public (deprecated, RFC 4291).
 */
#ifndef GW_SSRF_H
#define GW_SSRF_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* ------------------------------------------------------------ URLs ------------------ */

#define GW_URL_MAX 2048 /* bytes, the whole URL */

typedef struct gw_url {
    char scheme[8];               /* "http" or "https", lower case */
    char host[256];               /* lower case; an IPv6 literal without its brackets */
    int port;                     /* as written, else 80 (http) or 443 (https) */
    char path[GW_URL_MAX + 1];    /* path and query as written, "/" when absent; no fragment */
    bool host_is_ip;              /* an IPv4 dotted quad or a bracketed IPv6 literal */
    struct sockaddr_storage addr; /* when host_is_ip: the address, with port set */
} gw_url;

/* Parses an absolute http:// or https:// URL (scheme in any case). The host is a DNS
 * name (letters, digits, '-', '_', '.'; a trailing '.' is kept), a dotted-quad IPv4
 * address, or an IPv6 address in brackets (no zone id); an optional :port is 1..65535.
 * Refused: other schemes, user info (user:pass@), an empty host, an empty port, spaces,
 * control characters and non-ASCII bytes, URLs over GW_URL_MAX bytes, and IPv4 in forms
 * other than a dotted quad ("127.1", "0x7f.0.0.1", "2130706433": resolvers read them as
 * addresses). A fragment ("#...") is accepted and dropped: HTTP never sends it. Returns 0,
 * or -1 with err, a sentence starting "webhook URL ...". */
int gw_url_parse(const char *url, gw_url *out, char *err, size_t errlen);

/* ------------------------------------------------------------ allowlist ------------- */

#define GW_CIDR_LIST_MAX 32

typedef struct gw_cidr {
    int family;            /* AF_INET or AF_INET6 */
    unsigned char net[16]; /* network bytes (4 used for AF_INET), host bits zero */
    int prefix;            /* 0..32 or 0..128 */
} gw_cidr;

typedef struct gw_cidr_list {
    size_t n;
    gw_cidr v[GW_CIDR_LIST_MAX];
} gw_cidr_list;

/* Parses a comma-separated list of CIDRs, "127.0.0.0/8, 10.1.0.0/16, ::1/128" (spaces
 * around entries are ignored; a bare address is /32 or /128; "" or only spaces is the
 * empty list). An entry with host bits set ("10.1.2.3/8") is refused, since it reads as
 * one host but would admit a network. Returns 0, or -1 with err naming the entry. */
int gw_cidr_list_parse(const char *text, gw_cidr_list *out, char *err, size_t errlen);

/* Whether the address (AF_INET or AF_INET6; an IPv6 address that carries an IPv4 address,
 * as listed above, is matched as that IPv4 address too) is inside one of the list's
 * networks. l may be NULL (empty). */
bool gw_cidr_list_contains(const gw_cidr_list *l, const struct sockaddr *sa);

/* ------------------------------------------------------------ policy ---------------- */

/* NULL when the address may be contacted, else a short reason such as "loopback" (the
 * table above). An address inside allow (which may be NULL) is admitted whatever its
 * class. Anything but AF_INET and AF_INET6 is refused ("not an IP address"). */
const char *gw_addr_refused(const struct sockaddr *sa, const gw_cidr_list *allow);

/* The submit-time check of a parsed URL. An IP literal that gw_addr_refused refuses, or the
 * name "localhost" / "*.localhost" (with or without a trailing dot) unless 127.0.0.1 or
 * ::1 is in allow, gives -1 and err, e.g. "webhook URL points to a loopback address
 * (127.0.0.1); refused". Any other host name gives 0: it is not resolved here; the
 * delivery checks what it resolves to. */
int gw_url_check_literal(const gw_url *u, const gw_cidr_list *allow, char *err, size_t errlen);

/* ------------------------------------------------------------ pinning --------------- */

/* The CURLOPT_RESOLVE entry that makes curl connect to sa, the address that was checked,
 * for u's host name: "hooks.example.com:443:192.0.2.7", "hooks.example.com:443:[2001:db8::7]"
 * (an IPv6 address in brackets). An IP literal host gets "" (no pin): curl looks nothing
 * up for it, and libcurl 7.88 cannot parse an entry whose host is an IPv6 literal, in any
 * spelling ("::1:80:[::1]", "[::1]:80:[::1]"), and fails the transfer on it. Returns 0, or
 * -1 with out "" when sa is not AF_INET / AF_INET6 or out is too short. */
int gw_url_pin(const gw_url *u, const struct sockaddr *sa, char *out, size_t outlen);

#endif
