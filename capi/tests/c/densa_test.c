/* The C API from C: errors, vectors of texts and pairs (printed for the Rust test to compare
 * with the Rust API), a too-small buffer, hostile arguments (an array shorter than `count`
 * ending at a guard page, an overflowing count, a fork()ed child), and 4 threads sharing one
 * encoder.
 * With a sentence-transformers folder and a text, also the prompt and truncate_dim options.
 * With a cross-encoder and a reader, also rerank and read.
 * Usage: densa_test MODEL_DIR [ST_MODEL_DIR TEXT [RERANK_DIR QUERY PASSAGE READER_DIR QUESTION
 *        CONTEXT]] */
#define _DEFAULT_SOURCE /* mmap, fork */
#include "densa.h"

#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *texts[] = {"¿Quién escribió el Quijote?", "", "cafe\xcc\x81 y café 😀",
                              "La Biblioteca Nacional de España se fundó en 1711."};
static const char *titles[] = {"Miguel de Cervantes", ""};
static const char *bodies[] = {"Miguel de Cervantes fue un novelista español.",
                               "Un pasaje sin título."};
#define N_TEXTS 4
#define N_PAIRS 2

static densa_encoder *shared;
static float *expected;
static size_t dim;

static void *worker(void *arg) {
    (void)arg;
    float *out = malloc(N_TEXTS * dim * sizeof(float));
    if (!out) return (void *)1000L;
    long mismatches = 0;
    for (int call = 0; call < 50; call++) {
        if (densa_embed(shared, texts, N_TEXTS, out, N_TEXTS * dim) != 0) {
            fprintf(stderr, "thread: %s\n", densa_last_error());
            mismatches++;
        } else if (memcmp(out, expected, N_TEXTS * dim * sizeof(float)) != 0) {
            mismatches++;
        }
    }
    free(out);
    return (void *)mismatches;
}

static void print_rows(const char *kind, const float *rows, size_t n) {
    for (size_t i = 0; i < n; i++) {
        printf("%s %zu:", kind, i);
        for (size_t j = 0; j < dim; j++) printf(" %.9g", rows[i * dim + j]);
        printf("\n");
    }
}

int main(int argc, char **argv) {
    if (argc != 2 && argc != 4 && argc != 10) {
        fprintf(stderr, "usage: %s MODEL_DIR [ST_MODEL_DIR TEXT]\n", argv[0]);
        return 2;
    }
    printf("version %s\n", densa_version());

    densa_options options;
    densa_options_init(&options);
    options.threads = 2;

    /* A missing folder: NULL and a message naming it. */
    densa_encoder *missing = densa_open("/nonexistent/densa-model", &options);
    printf("missing: %s | %s\n", missing ? "opened" : "NULL", densa_last_error());

    shared = densa_open(argv[1], &options);
    if (!shared) {
        fprintf(stderr, "open: %s\n", densa_last_error());
        return 1;
    }
    dim = densa_dim(shared);
    printf("dim %zu\n", dim);

    expected = malloc(N_TEXTS * dim * sizeof(float));
    float *pairs = malloc(N_PAIRS * dim * sizeof(float));
    if (!expected || !pairs) return 1;
    if (densa_embed(shared, texts, N_TEXTS, expected, N_TEXTS * dim) != 0) {
        fprintf(stderr, "embed: %s\n", densa_last_error());
        return 1;
    }
    print_rows("text", expected, N_TEXTS);

    if (densa_embed_pairs(shared, titles, bodies, N_PAIRS, pairs, N_PAIRS * dim) != 0) {
        fprintf(stderr, "embed_pairs: %s\n", densa_last_error());
        return 1;
    }
    print_rows("pair", pairs, N_PAIRS);

    /* Errors: a buffer too small, NULL texts, bad UTF-8, a bad precision. */
    int rc = densa_embed(shared, texts, N_TEXTS, pairs, N_PAIRS * dim);
    printf("small buffer: %d | %s\n", rc, densa_last_error());
    rc = densa_embed(shared, NULL, 2, pairs, N_PAIRS * dim);
    printf("null texts: %d | %s\n", rc, densa_last_error());
    const char *bad[] = {"ok", "\xff\xfe"};
    rc = densa_embed(shared, bad, 2, pairs, N_PAIRS * dim);
    printf("bad utf8: %d | %s\n", rc, densa_last_error());
    densa_options wrong = options;
    wrong.precision = 7;
    densa_encoder *none = densa_open(argv[1], &wrong);
    printf("bad precision: %s | %s\n", none ? "opened" : "NULL", densa_last_error());

    /* One text pointer placed just before a page that cannot be read, with count 2 and an
     * output for one row: the short output is reported before any text is read (reading
     * texts[1] would fault). */
    long page = sysconf(_SC_PAGESIZE);
    char *pages = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (pages == MAP_FAILED || mprotect(pages + page, page, PROT_NONE) != 0) return 1;
    const char **one_text = (const char **)(pages + page - sizeof(char *));
    one_text[0] = texts[0];
    rc = densa_embed(shared, one_text, 2, pairs, dim);
    printf("guard page: %d | %s\n", rc, densa_last_error());
    rc = densa_embed_pairs(shared, one_text, one_text, 2, pairs, dim);
    printf("guard page pairs: %d | %s\n", rc, densa_last_error());
    munmap(pages, 2 * page);

    /* A count whose product with dim overflows, and a NULL encoder. */
    rc = densa_embed(shared, texts, SIZE_MAX, pairs, SIZE_MAX);
    printf("overflow: %d | %s\n", rc, densa_last_error());
    rc = densa_embed(NULL, texts, 1, pairs, dim);
    printf("null encoder: %d | %s\n", rc, densa_last_error());

    /* max_length 2 cannot hold a pair's 3 special tokens. */
    densa_options short_options = options;
    short_options.max_length = 2;
    densa_encoder *short_encoder = densa_open(argv[1], &short_options);
    if (!short_encoder) return 1;
    rc = densa_embed_pairs(short_encoder, titles, bodies, N_PAIRS, pairs, N_PAIRS * dim);
    printf("max_length 2 pairs: %d | %s\n", rc, densa_last_error());
    densa_close(short_encoder);

    /* A child of fork() gets an error, not a hang, from the encoder its parent opened. */
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        rc = densa_embed(shared, texts, 1, pairs, dim);
        printf("forked child: %d | %s\n", rc, densa_last_error());
        fflush(stdout);
        _exit(0);
    }
    int status = 0;
    if (child < 0 || waitpid(child, &status, 0) != child) return 1;
    printf("forked child exit: %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);

    /* A program built against an older, smaller densa_options (only size and threads): the
     * library reads what it has and defaults the rest. */
    densa_options old = options;
    old.size = offsetof(densa_options, threads) + sizeof(old.threads);
    old.precision = 99; /* beyond the old struct: never read */
    densa_encoder *older = densa_open(argv[1], &old);
    printf("older options: %s\n", older && densa_dim(older) == dim ? "ok" : densa_last_error());
    densa_close(older);

    /* The prompt and truncate_dim options, on a sentence-transformers folder. */
    if (argc >= 4) {
        const char *one[] = {argv[3]};
        densa_options st_options;
        densa_options_init(&st_options);
        st_options.threads = 2;
        st_options.prompt = "pregunta: ";
        densa_encoder *prompted = densa_open(argv[2], &st_options);
        st_options.prompt = NULL;
        st_options.truncate_dim = 8;
        densa_encoder *truncated = densa_open(argv[2], &st_options);
        if (!prompted || !truncated) {
            printf("st open: %s\n", densa_last_error());
            return 1;
        }
        size_t saved = dim;
        float row[64];
        dim = densa_dim(prompted);
        if (dim > 64 || densa_embed(prompted, one, 1, row, dim) != 0) return 1;
        print_rows("prompted", row, 1);
        dim = densa_dim(truncated);
        if (dim > 64 || densa_embed(truncated, one, 1, row, dim) != 0) return 1;
        print_rows("truncated", row, 1);
        dim = saved;
        densa_close(prompted);
        densa_close(truncated);
    }

    /* The heads: a cross-encoder's logits and a reader's answer. */
    if (argc == 10) {
        densa_options head_options;
        densa_options_init(&head_options);
        head_options.threads = 2;
        densa_reranker *reranker = densa_reranker_open(argv[4], &head_options);
        if (!reranker) {
            printf("reranker open: %s\n", densa_last_error());
            return 1;
        }
        const char *queries[] = {argv[5]};
        const char *passages[] = {argv[6]};
        float logits[16];
        size_t labels = densa_reranker_labels(reranker);
        if (labels == 0 || labels > 16 || densa_rerank(reranker, queries, passages, 1, logits, labels) != 0) return 1;
        printf("rerank 0:");
        for (size_t j = 0; j < labels; j++) printf(" %.9g", logits[j]);
        printf("\n");
        int small = densa_rerank(reranker, queries, passages, 1, logits, 0);
        printf("small rerank buffer: %d | %s\n", small, densa_last_error());
        densa_reranker_close(reranker);
        densa_reader *reader = densa_reader_open(argv[7], &head_options);
        if (!reader) {
            printf("reader open: %s\n", densa_last_error());
            return 1;
        }
        size_t start = 0, end = 0;
        double score = 0;
        if (densa_read(reader, argv[8], argv[9], &start, &end, &score) != 0) return 1;
        printf("read: %zu %zu %.9g\n", start, end, score);
        int null_start = densa_read(reader, argv[8], argv[9], NULL, &end, &score);
        printf("read null: %d | %s\n", null_start, densa_last_error());
        densa_reader_close(reader);
        densa_reranker_close(NULL);
        densa_reader_close(NULL);
    }

    /* 4 threads, 50 calls each, on the shared encoder: every result equal to the first. */
    pthread_t threads[4];
    for (int t = 0; t < 4; t++) {
        if (pthread_create(&threads[t], NULL, worker, NULL) != 0) return 1;
    }
    long mismatches = 0;
    for (int t = 0; t < 4; t++) {
        void *result;
        pthread_join(threads[t], &result);
        mismatches += (long)result;
    }
    printf("threads mismatches %ld\n", mismatches);

    densa_close(shared);
    densa_close(NULL);
    free(expected);
    free(pairs);
    return 0;
}
