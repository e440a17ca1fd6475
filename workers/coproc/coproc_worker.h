/*
 * coproc_worker: the batchd worker of a coprocess model (a model written in
 * Python or another language, docs/coprocess.md).
 *
 * The supervisor forks this worker like any other, with one end of a
 * socketpair whose other end belongs to the worker's own child of the
 * model's host (the zygote, service/supervisor/zygote.h). The ring stays in C: this
 * process claims tasks, hands each chunk to the child in one BATCH frame,
 * and commits the RESULT frames that come back one by one, with every rule
 * of worker.c (per-item commit, the item deadline through item_started_ns,
 * cancellation between items, the output area's limit). An item's
 * {"$object": ID} references are resolved here and sent with the object's
 * offset, dtype and shape in the object store's memfd, which the child has
 * mapped read-only: the child reads the object in place.
 *
 * Recycling (worker.h): past its group's max_items, or with its child's
 * resident set past max_rss, after a task, this process sends STOP (the
 * child runs fini()) and exits WORKER_EXIT_RECYCLE; its replacement gets
 * a new child of the same host (load() does not run again).
 *
 * If the child dies (its socket closes) or breaks the protocol, this
 * process exits WORKER_EXIT_COPROC: a worker death, so the supervisor hands
 * the task back (attempts count as for a C model's crash) and starts a new
 * pair. When this process dies, the supervisor kills its child.
 *
 * Process: worker only, single-threaded. Ownership: fd is taken (closed at
 * exit); the shared region is borrowed.
 */
#ifndef BATCHD_COPROC_WORKER_H
#define BATCHD_COPROC_WORKER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "workers/coproc/coproc.h"
#include "service/ring/shm.h"

/*
 * Appends one item (JSON text, len bytes) to a BATCH frame being built in
 * b: u32 length then the text. Text without "$object" goes as it is; an
 * item that names objects is parsed, each reference {"$object": ID} gets
 * "$offset", "$dtype", "$shape" and "$bytes" members (host.h resolves it),
 * and the item is re-encoded. Returns 0; or -EINVAL / -ENOENT with the
 * item's error message in err (not valid JSON, a malformed reference, an
 * unknown object): the item is then not appended; -ENOMEM / -EMSGSIZE.
 */
int coproc_worker_add_item(struct coproc_buf *b, const uint8_t *data, uint32_t len, char *err,
                           size_t errlen);

/* Runs worker slot w of a coprocess model until told to stop; never
 * returns. */
__attribute__((noreturn)) void coproc_worker_main(struct shm *shm, uint32_t w, int fd,
                                                  pid_t supervisor);

#endif
