/* options.c - the options every server shares, and their error messages. */
#include "lab.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

void server_options_init(struct server_options *opts)
{
    opts->addr = DEFAULT_ADDR;
    opts->port = DEFAULT_PORT;
    opts->quiet = false;
}

void usage_error(const char *usage, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s: ", program_name());
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n%s", usage);
    exit(2);
}

bool parse_number(const char *text, long min, long max, long *out)
{
    char *end;
    long value;

    if (text[0] < '0' || text[0] > '9') /* strtol would accept " -5" */
        return false;
    errno = 0;
    value = strtol(text, &end, 10);
    if (errno != 0 || *end != '\0' || value < min || value > max)
        return false;
    *out = value;
    return true;
}

bool is_valid_port(const char *text)
{
    long port;

    return parse_number(text, 0, 65535, &port);
}

bool is_valid_addr(const char *text)
{
    struct in_addr v4;
    struct in6_addr v6;

    return inet_pton(AF_INET, text, &v4) == 1 ||
           inet_pton(AF_INET6, text, &v6) == 1;
}

void server_option(struct server_options *opts, int opt, const char *usage)
{
    switch (opt) {
    case 'b':
        if (!is_valid_addr(optarg))
            usage_error(usage, "bad address '%s': not an IPv4 or IPv6 address",
                        optarg);
        opts->addr = optarg;
        break;
    case 'p':
        if (!is_valid_port(optarg))
            usage_error(usage, "bad port '%s': not a number in 0-65535",
                        optarg);
        opts->port = optarg;
        break;
    case 'q':
        opts->quiet = true;
        break;
    case 'h':
        fputs(usage, stdout);
        exit(0);
    case ':':
        usage_error(usage, "option -%c needs a value", optopt);
    default:
        if (optopt == '-') /* getopt() reads "--help" as the option '-' */
            usage_error(usage, "long options such as --help are not "
                               "supported: -h shows the options");
        usage_error(usage, "unknown option -%c", optopt);
    }
}
