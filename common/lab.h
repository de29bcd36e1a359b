/*
 * lab.h - the small helper library every chapter links.
 *
 * It holds only what two or more chapters would otherwise write again:
 * error messages, the options every server shares (-b -p -q -h), address
 * setup and formatting, and read/write loops that survive short counts and
 * EINTR. It never hides a call that a chapter teaches: chapter 02 calls
 * bind() and listen() itself, chapter 03 calls accept() itself, and so on.
 */
#ifndef LAB_H
#define LAB_H

#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

/* ---- Error reporting (error.c) ------------------------------------------
 * Every message starts with the program's name, so that a student who runs
 * three programs in three terminals knows which one is talking. */

/* Remember argv[0]'s last component ("server") for messages. Call first. */
void set_program_name(const char *argv0);
const char *program_name(void);

/* The symbolic name of an errno value ("EADDRINUSE"), the name you find in
 * the man pages; "errno 123" for one this table does not know. */
const char *errno_name(int err);

/* "prog: MESSAGE" on stderr. */
void warn_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "prog: MESSAGE: Address already in use (EADDRINUSE)", from errno. */
void warn_errno(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The same, then exit(1): for setup errors only, never for one client. */
_Noreturn void die_errno(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/* ---- Command-line options (options.c) ------------------------------------ */

#define DEFAULT_ADDR "127.0.0.1" /* reachable from this machine only */
#define DEFAULT_PORT "8080"

/* The options every server shares. A chapter appends its own letters:
 *     getopt(argc, argv, SERVER_OPTSTRING "t:")
 * The leading ':' makes getopt() return ':' for a missing value instead of
 * printing its own message, so all our messages look alike. */
#define SERVER_OPTSTRING ":b:p:qh"

struct server_options {
    const char *addr; /* -b ADDR: an IPv4 or IPv6 literal */
    const char *port; /* -p PORT: 0-65535, 0 = let the kernel choose */
    bool quiet;       /* -q: no accepted/closed lines */
};

/* Fill in the defaults (127.0.0.1, 8080, not quiet). */
void server_options_init(struct server_options *opts);

/* Handle one getopt() result that every server shares: -b, -p, -q, -h, and
 * the errors ('?' for an unknown option, ':' for a missing value). -h prints
 * USAGE on stdout and exits 0; a bad value exits 2 through usage_error(). */
void server_option(struct server_options *opts, int opt, const char *usage);

/* "prog: MESSAGE" and then USAGE, both on stderr, and exit(2). */
_Noreturn void usage_error(const char *usage, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Parse a whole decimal number in [min, max]; false if TEXT is not one. */
bool parse_number(const char *text, long min, long max, long *out);
/* A port is a number in 0-65535. */
bool is_valid_port(const char *text);
/* An address is an IPv4 or IPv6 literal: "127.0.0.1", "::1", "0.0.0.0". */
bool is_valid_addr(const char *text);

/* ---- Addresses (address.c) ----------------------------------------------- */

/* Room for the longest "[ffff:ffff:...:255.255.255.255]:65535". */
#define ADDR_TEXT_MAX 64

/* Write "127.0.0.1:8080" or "[::1]:8080" into BUF and return BUF. */
char *format_addr(const struct sockaddr *sa, socklen_t len, char *buf,
                  size_t size);

/* A listening TCP socket on ADDR:PORT, or -1 after printing
 * "prog: CALL ADDR:PORT: reason" (CALL is getaddrinfo, socket, setsockopt,
 * bind or listen). It walks getaddrinfo()'s answers, sets SO_REUSEADDR so a
 * restarted server is not refused while old connections sit in TIME_WAIT,
 * then binds and listens: the steps chapter 02 writes out by hand. */
int open_listener(const char *addr, const char *port, int backlog);

/* A TCP socket connected to ADDR:PORT, or -1 after printing why. */
int open_connection(const char *addr, const char *port);

/* Print "listening on ADDR:PORT" (the real port, from getsockname()) on
 * stdout and flush it: the line the tests wait for. 0, or -1 after saying
 * why on stderr ("write stdout: ..." when stdout is full or closed). */
int announce_listening(int listen_fd);

/* ---- I/O that survives short counts and EINTR (io.c) --------------------- */

/* read() that retries when a signal interrupts it (EINTR). */
ssize_t read_retry(int fd, void *buf, size_t len);
/* Write all LEN bytes: a write() may take fewer than asked (a short write),
 * and a signal may interrupt it. Returns 0, or -1 with errno set. */
int write_all(int fd, const void *buf, size_t len);
/* Add O_NONBLOCK to FD's flags. 0, or -1 with errno set. */
int set_nonblocking(int fd);

/* What a server should do after accept() failed with ERR (man 2 accept):
 *   ACCEPT_RETRY    a signal, an empty queue, or a client that vanished
 *                   while queued: go round again
 *   ACCEPT_BACKOFF  out of descriptors (EMFILE, ENFILE) or memory: log it
 *                   and stop accepting for a moment, or the loop would spin
 *   ACCEPT_FATAL    a bug in the program (EBADF, EINVAL...): stop */
enum accept_action { ACCEPT_RETRY, ACCEPT_BACKOFF, ACCEPT_FATAL };
enum accept_action accept_error_action(int err);

/* ---- Waiting that a stop can always end (io.c) ----------------------------
 * A signal that lands just BEFORE a blocking call is not an EINTR: the
 * handler runs, sets the flag, and then the call blocks anyway. So a server
 * keeps SIGINT and SIGTERM blocked (block_stop_signals()) and sleeps in one
 * place only, ppoll(), which lets them in while it sleeps and nowhere else.
 * A stop that came early is pending, and ppoll() returns at once. These
 * helpers depend on the global stop_requested: their names say "or_stop". */

/* Wait until FD is ready for EVENTS (POLLIN, POLLOUT) or a stop is
 * requested. TIMEOUT_MS: -1 waits for ever. Returns 1 when FD is ready (or
 * has an error or hang-up to report: the next call on it says which), 0 on
 * timeout, -1 with errno EINTR when a stop was requested, or -1 with errno
 * for a real error. */
int wait_fd_or_stop(int fd, short events, int timeout_ms);

/* Wait until FD is readable, then read() it once. Returns what read()
 * returns (0 = end of file), or -1 with errno EINTR on a stop. */
ssize_t read_or_stop(int fd, void *buf, size_t len);

/* Send all LEN bytes on socket FD without ever blocking outside
 * wait_fd_or_stop(): send(MSG_DONTWAIT) takes what fits, and we wait for
 * room for the rest. 0, or -1 with errno set (EINTR: a stop). */
int send_all_or_stop(int fd, const void *buf, size_t len);

/* ---- Standard streams and logging (log.c) ----------------------------------
 * A server writes to stdout and stderr, which can be anything its starter
 * chose: a terminal, a file, a pipe that nobody reads, /dev/full, or
 * nothing at all (a closed descriptor). */

/* Call first in main(), before anything opens a file: open /dev/null on
 * any of descriptors 0, 1 and 2 that is closed. Otherwise the next socket
 * gets the lowest free number, say 2, and every error message would be
 * sent to that client. Exits 1 if /dev/null cannot be opened. */
void keep_std_fds_open(void);

/* Check what was written to stdout so far: fflush() it, and report a stdout
 * that was closed at start (EBADF) or a write that failed (a full disk:
 * ENOSPC). 0, or -1 after printing "prog: write stdout: reason". Leave
 * stdout fully buffered (stdio's default for a file or pipe) so that the
 * write happens here and its reason is known; a write that failed earlier,
 * inside a line-buffered printf(), is reported as EIO. */
int check_stdout(void);

/* Write TEXT to stdout, all of it (blocking): for output that must not be
 * lost, such as the "listening on" line. 0, or -1 after printing
 * "prog: write stdout: reason" (EBADF for a stdout closed at start). */
int write_stdout(const char *text, size_t len);

/* Print one log line ("accepted 127.0.0.1:50312") on stdout, as one
 * write() that never blocks: if nobody reads the other end of a pipe and it
 * is full, the line is dropped and counted instead of stopping the server.
 * Lines are cut at 255 bytes. Safe to call from several threads: one
 * write() per line keeps lines whole, and a lock keeps the poll() and the
 * write() together. */
void log_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* How many lines log_line() and the warn_...() functions dropped. */
unsigned long log_lines_dropped(void);
/* The writer behind log_line() and warn_...(): one write() of LINE to FD if
 * FD has room now, else the line is dropped and counted. */
void write_log_line(int fd, const char *line, size_t len);

/* ---- Signals (signals.c) --------------------------------------------------
 */

/* Set to 1 by SIGINT or SIGTERM once catch_stop_signals() has run.
 * A lock-free atomic rather than the classic volatile sig_atomic_t: both
 * are safe between a handler and the thread it interrupts, but only an
 * atomic is also safe to read from other threads (chapter 05). */
extern atomic_int stop_requested;

/* Catch SIGINT and SIGTERM: the handler only sets stop_requested. It also
 * unblocks them, because a process inherits its parent's signal mask (and
 * a parent may have blocked them). Without SA_RESTART, a call blocked in a
 * thread that lets them in fails with EINTR. 0, or -1 with errno set. */
int catch_stop_signals(void);

/* Block SIGINT and SIGTERM in the calling thread (a stop then waits,
 * pending, until the thread lets it in), and remember the mask to let them
 * in with: stop_wait_mask(). 0, or -1 with errno set. */
int block_stop_signals(void);
/* The calling thread's mask from before block_stop_signals(), without
 * SIGINT and SIGTERM: the mask for pselect(), ppoll(), epoll_pwait(). */
const sigset_t *stop_wait_mask(void);

/* True if SIGINT or SIGTERM is pending (arrived while blocked); then it also
 * sets stop_requested. Call it after ppoll(), pselect() or epoll_pwait()
 * returned READY descriptors: Linux runs a handler only when such a wait
 * fails with EINTR, so a server whose descriptors are always ready (a
 * client that keeps sending, a full descriptor table) would keep the stop
 * pending for ever. */
bool take_pending_stop(void);

/* Sleep until SIGINT or SIGTERM (after catch_stop_signals()). The signals
 * are blocked while the flag is tested, and sigsuspend() unblocks them and
 * sleeps in one step, so a signal arriving just before the sleep cannot be
 * missed. For programs that have nothing else to wait for. */
void wait_for_stop_signal(void);

/* Ignore SIGPIPE, whose default action kills the process when it writes to
 * a socket the peer has closed; write() then fails with EPIPE instead, which
 * we handle like any per-client error. 0, or -1 with errno set. */
int ignore_sigpipe(void);

#endif
