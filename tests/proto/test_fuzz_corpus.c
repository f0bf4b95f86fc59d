/* Replays the saved fuzz corpus (proto/fuzz/corpus/) through the fuzz
 * target's entry point, so every input the fuzzer once found interesting
 * stays covered by the ordinary (sanitized) test run. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "open %s", path);
    cr_assert_eq(fseek(f, 0, SEEK_END), 0);
    long size = ftell(f);
    cr_assert_geq(size, 0);
    cr_assert_leq(size, 1 << 20, "%s: corpus files stay small", path);
    rewind(f);
    uint8_t *buf = malloc((size_t)size + 1);
    cr_assert_eq(fread(buf, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    LLVMFuzzerTestOneInput(buf, (size_t)size);
    free(buf);
    return (size_t)size;
}

Test(fuzz_corpus, every_saved_input_replays_cleanly)
{
    const char *dir_path = LOOM_SOURCE_DIR "/proto/fuzz/corpus";
    DIR *dir = opendir(dir_path);
    cr_assert_not_null(dir, "corpus directory %s", dir_path);
    size_t files = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir_path, e->d_name);
        replay_file(path);
        files++;
    }
    closedir(dir);
    cr_assert_geq(files, 10, "the saved corpus has %zu files", files);
}
