/*
 * raw: byte-exact HTTP/1.1 exchanges for the hostile-input tests.
 *
 * libcurl is a well-behaved client: it normalises "/../" away, computes
 * Content-Length itself, refuses to send a NUL in a header and never lies
 * about a body's length. The bad-input catalogue (test_bad_inputs) and the
 * robustness test need the misbehaving client too, so this module sends
 * exactly the bytes it is given over a fresh TCP connection to
 * 127.0.0.1:port and parses what comes back into a struct h_resp (the
 * harness's), so that the usual checks and the contract log apply.
 *
 * The exchange never half-closes the connection (a real client does not,
 * and libmicrohttpd treats a half-closed connection as gone), sends and
 * reads at the same time (a server may answer, 413 say, before the body is
 * in, and close: the answer must still be read), and gives up at a
 * deadline, which is how a server that waits for bytes that never come
 * (a hang) is told apart from one that answers.
 *
 * Threads: none; each call uses its own socket.
 * Ownership: the request bytes are borrowed; *resp is filled like
 * h_request()'s (free it with h_resp_free()).
 */
#ifndef BATCHD_TEST_RAW_H
#define BATCHD_TEST_RAW_H

#include <stdbool.h>
#include <stddef.h>

#include "tests/integration/harness.h"

/* Largest response read (the bad inputs' answers are small problems). */
#define H_RAW_MAX_RESPONSE ((size_t)4 << 20)

/*
 * Sends req[0..len) to 127.0.0.1:port and reads one final response (1xx
 * interim responses are skipped), waiting at most timeout_s seconds in all.
 * The response's body ends where its Content-Length says, at the end of a
 * chunked body, or when the server closes the connection.
 * Returns 0 with *resp filled (status, headers, content_type, body);
 * -1 with resp->status 0 and resp->error saying what happened: the
 * connection could not be made, was closed without a response ("dropped"),
 * or the deadline passed ("timed out": the server was waiting).
 * *resp is zeroed first in every case.
 */
int h_raw_exchange(int port, const char *req, size_t len, int timeout_s, struct h_resp *resp);

/* True when the connection error of a failed exchange means the server
 * closed the connection without answering (as opposed to a timeout). */
bool h_raw_dropped(const struct h_resp *resp);

#endif
