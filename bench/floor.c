/*
 * The floor of the comparison (bench/README.md): a server that answers every request with
 * the same fixed bytes, without parsing HTTP. It only scans what arrives for the blank line
 * that ends a request head (wrk sends GETs without a body) and for the literal
 * "Connection: close", and answers each head with one of two prepared responses.
 *
 * One thread, one epoll loop, non-blocking sockets: per request it makes the same system
 * calls any server must make (one read, one write, an epoll_wait that usually returns at
 * once), so its CPU per request is what loopback TCP itself costs on this machine. After a
 * "Connection: close" response it waits for the client to close first (wrk does at once),
 * the cheapest order: the TIME_WAIT state then stays on the client's side. C rather
 * than Python (an asyncio Protocol spends more time in the event loop than tidegate spends
 * per request, so it would not be a floor) or Rust (a separate cargo project to build);
 * gcc is already needed for bjoern.
 *
 *   gcc -O2 -o floor bench/floor.c && ./floor 127.0.0.1 PORT
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_EVENTS 256
#define OUT_CAP 4096 /* ~48 responses: more than a client that does not pipeline needs */

static const char KEEP[] =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";
static const char CLOSE[] =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n"
    "Connection: close\r\n\r\nHello, World!";

/* Per connection: how far into "\r\n\r\n" the last read ended, and output not yet sent. */
struct conn {
    int fd;
    int matched;
    int close_after; /* a request asked for Connection: close: answer so, let the client close */
    size_t out_len, out_sent;
    char out[OUT_CAP];
};

static void drop(int ep, struct conn *c) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c);
}

/* Send what is pending; returns 0 when all went out, 1 when the socket is full, -1 on error. */
static int flush_out(struct conn *c) {
    while (c->out_sent < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_sent, c->out_len - c->out_sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return 1;
            if (errno == EINTR) continue;
            return -1;
        }
        c->out_sent += (size_t)n;
    }
    c->out_len = c->out_sent = 0;
    return 0;
}

/* Count request heads in buf (the "\r\n\r\n" matcher carries over between reads) and queue
 * one response per head. */
static void queue_responses(struct conn *c, const char *buf, size_t len) {
    static const char END[] = "\r\n\r\n";
    if (memmem(buf, len, "Connection: close", 17) || memmem(buf, len, "connection: close", 17))
        c->close_after = 1;
    for (size_t i = 0; i < len; i++) {
        if (buf[i] == END[c->matched]) {
            if (++c->matched == 4) {
                const char *resp = c->close_after ? CLOSE : KEEP;
                size_t n = c->close_after ? sizeof CLOSE - 1 : sizeof KEEP - 1;
                if (c->out_len + n <= OUT_CAP) {
                    memcpy(c->out + c->out_len, resp, n);
                    c->out_len += n;
                }
                c->matched = 0;
            }
        } else {
            c->matched = buf[i] == '\r' ? 1 : 0;
        }
    }
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s HOST PORT\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    /* A shell's background job starts with SIGINT ignored: the harness stops us with it. */
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    if (inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1 ||
        bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(lfd, 1024) < 0) {
        perror("floor: bind/listen");
        return 1;
    }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    fprintf(stderr, "floor listening on %s:%s (pid %d)\n", argv[1], argv[2], getpid());

    struct epoll_event events[MAX_EVENTS];
    char buf[16384];
    for (;;) {
        int n = epoll_wait(ep, events, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("floor: epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (c == NULL) { /* the listener: accept everything waiting */
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct conn *nc = malloc(sizeof *nc);
                    if (!nc) {
                        close(fd);
                        continue;
                    }
                    nc->fd = fd;
                    nc->matched = nc->close_after = 0;
                    nc->out_len = nc->out_sent = 0;
                    struct epoll_event cev = {.events = EPOLLIN, .data.ptr = nc};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
                }
                continue;
            }
            if (events[i].events & EPOLLOUT) {
                int r = flush_out(c);
                if (r < 0) {
                    drop(ep, c);
                    continue;
                }
                if (r == 0) {
                    struct epoll_event cev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &cev);
                }
                continue;
            }
            ssize_t got = recv(c->fd, buf, sizeof buf, 0);
            if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
                drop(ep, c);
                continue;
            }
            if (got < 0) continue;
            queue_responses(c, buf, (size_t)got);
            int r = flush_out(c);
            if (r < 0) {
                drop(ep, c);
            } else if (r == 1) {
                struct epoll_event cev = {.events = EPOLLOUT, .data.ptr = c};
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &cev);
            }
        }
    }
}
