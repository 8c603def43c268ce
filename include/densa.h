/*
 * densa: BERT / DPR text encoders on the CPU, with the vectors of Hugging Face transformers.
 * C API of libdensa_c.so (crate densa-capi; link with -ldensa_c). Stable: functions are only ever added; the options
 * struct only grows at its end and is versioned by its `size` field.
 *
 * Thread safety: one densa_encoder may be used by many threads at once (each call runs on
 * the encoder's own worker threads). densa_last_error() is per calling thread.
 * No Rust panic crosses this boundary: an internal error is reported like any other.
 *
 * fork(): an encoder's worker threads exist only in the process that opened it, so open the
 * encoder after forking (in each child). A call on an encoder inherited through fork() fails
 * with -1 (densa_dim: 0) and a message saying so; it never hangs.
 *
 *   densa_options options;
 *   densa_options_init(&options);
 *   densa_encoder *enc = densa_open("models/dpr-question", &options);
 *   if (!enc) { fprintf(stderr, "%s\n", densa_last_error()); return 1; }
 *   size_t dim = densa_dim(enc);
 *   float *out = malloc(n * dim * sizeof(float));
 *   if (densa_embed(enc, texts, n, out, n * dim) != 0) fprintf(stderr, "%s\n", densa_last_error());
 *   densa_close(enc);
 */
#ifndef DENSA_H
#define DENSA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Values of densa_options.precision. */
#define DENSA_PRECISION_AUTO 0 /* int8 for a `densa quantize` folder, f32 otherwise */
#define DENSA_PRECISION_F32 1
#define DENSA_PRECISION_INT8 2

typedef struct densa_encoder densa_encoder;

typedef struct densa_options {
    /* sizeof(densa_options) as the caller compiled it; set by densa_options_init. */
    size_t size;
    /* Worker threads; 0 = one per core. */
    uint32_t threads;
    /* DENSA_PRECISION_*. */
    uint32_t precision;
    /* Non-zero: L2-normalise every vector. */
    uint32_t normalize;
    /* Truncation length in tokens; 0 = the model's default. */
    uint32_t max_length;
    /* Inputs per forward pass; 0 = 32. */
    uint32_t batch_size;
    /* Keep the first N values of every vector (Matryoshka), before `normalize`; 0 = all. */
    uint32_t truncate_dim;
    /* A literal prefix put before every text ("query: "), copied at densa_open; NULL = the
     * folder's default prompt (sentence-transformers' default_prompt_name), "" = none. */
    const char *prompt;
} densa_options;

/* Fills `options` with the defaults and its size. Inline, so that `size` is the size of the
 * struct this program was compiled with: a newer library reads only the fields it has and
 * uses defaults for the rest. Always call it first. */
static inline void densa_options_init(densa_options *options) {
    options->size = sizeof(densa_options);
    options->threads = 0;
    options->precision = DENSA_PRECISION_AUTO;
    options->normalize = 0;
    options->max_length = 0;
    options->batch_size = 0;
    options->truncate_dim = 0;
    options->prompt = NULL;
}

/* Opens a model folder (config.json, model.safetensors, tokenizer files). NULL on error. */
densa_encoder *densa_open(const char *model_dir, const densa_options *options);

/* Width of the vectors the encoder writes; 0 if `encoder` is NULL or was opened before a
 * fork() in another process. */
size_t densa_dim(const densa_encoder *encoder);

/* Embeds `count` NUL-terminated UTF-8 texts into `out`, row-major (count, dim); `out_len`
 * is the number of floats `out` holds and must be at least count * dim. The encoder, count,
 * out_len and every array pointer are checked before any text is read: a short `out` is -1
 * even when `texts` holds fewer than `count` pointers. `count` 0 writes nothing.
 * Returns 0, or -1 on error (nothing meaningful is written to `out` then). */
int densa_embed(densa_encoder *encoder, const char *const *texts, size_t count, float *out,
                size_t out_len);

/* As densa_embed, for pairs (title[i], text[i]): DPR passages. */
int densa_embed_pairs(densa_encoder *encoder, const char *const *titles,
                      const char *const *texts, size_t count, float *out, size_t out_len);

/* The message of this thread's last failed call ("" if none has failed). Valid until this
 * thread's next failed densa call. */
const char *densa_last_error(void);

/* Frees an encoder (NULL is fine). */
void densa_close(densa_encoder *encoder);

/* The library's version, e.g. "0.1.0". */
const char *densa_version(void);

/* A cross-encoder (a *ForSequenceClassification folder): scores (query, text) pairs. */
typedef struct densa_reranker densa_reranker;

/* Opens a cross-encoder folder (options as for densa_open; pooling and prompts are the
 * head's). NULL on error. */
densa_reranker *densa_reranker_open(const char *model_dir, const densa_options *options);

/* Logits per pair (num_labels); 0 on error. */
size_t densa_reranker_labels(const densa_reranker *reranker);

/* Writes the logits of `count` pairs (queries[i], texts[i]), densa_reranker_labels each, into
 * `out` (`out_len` floats). Returns 0, or -1 on error. */
int densa_rerank(densa_reranker *reranker, const char *const *queries, const char *const *texts,
                 size_t count, float *out, size_t out_len);

/* Frees a reranker (NULL is fine). */
void densa_reranker_close(densa_reranker *reranker);

/* An extractive reader (a *ForQuestionAnswering folder). */
typedef struct densa_reader densa_reader;

/* Opens a reader folder (options as for densa_open). NULL on error. */
densa_reader *densa_reader_open(const char *model_dir, const densa_options *options);

/* The best answer to `question` in `context` (windows of 384 tokens overlapping by 128,
 * answers of at most 15 tokens, as transformers 4's pipeline): the answer is the bytes
 * [*start, *end) of `context`, of probability *score. Returns 0, or -1 on error. */
int densa_read(densa_reader *reader, const char *question, const char *context, size_t *start,
               size_t *end, double *score);

/* Frees a reader (NULL is fine). */
void densa_reader_close(densa_reader *reader);

#ifdef __cplusplus
}
#endif

#endif /* DENSA_H */
