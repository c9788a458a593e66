/* Cron schedules: five fields (minute hour day-of-month month day-of-week, UTC), each '*', N,
 * N-M, any of them with '/STEP', comma-separated.  The same grammar as imagebuild/cron.py; one
 * table tests both (tests/unit/imagebuild/test_image_cron.py). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "schedule.h"

/* One field: '*', N, N-M, any of them with '/STEP', comma-separated.  0 on success. */
static int parse_field(const char *s, int lo, int hi, uint64_t *bits, int *any) {
    char buf[256];
    size_t len = strlen(s);
    if (!len || len >= sizeof buf || s[0] == ',' || s[len - 1] == ',' || strstr(s, ",,")) return -1;
    strcpy(buf, s);   /* strtok_r skips empty items: ",," is refused above, as imagebuild does */
    *bits = 0;
    *any = strcmp(s, "*") == 0;
    char *save = NULL;
    for (char *item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        int a = lo, b = hi, step = 1;
        char *slash = strchr(item, '/');
        if (slash) {
            *slash = 0;
            char *end;
            long st = strtol(slash + 1, &end, 10);
            if (!slash[1] || *end || st < 1 || st > hi) return -1;
            step = (int)st;
        }
        if (strcmp(item, "*") != 0) {
            char *end;
            if (!isdigit((unsigned char)item[0])) return -1;
            a = (int)strtol(item, &end, 10);
            if (*end == '-') {
                char *end2;
                if (!isdigit((unsigned char)end[1])) return -1;
                b = (int)strtol(end + 1, &end2, 10);
                if (*end2) return -1;
            } else if (*end) {
                return -1;
            } else {
                b = slash ? hi : a;   /* "5/15": from 5 to the end, every 15 */
            }
        }
        if (a < lo || b > hi || a > b) return -1;
        for (int v = a; v <= b; v += step) *bits |= 1ULL << v;
    }
    return *bits ? 0 : -1;
}

static const int LOW[5] = {0, 0, 1, 1, 0}, HIGH[5] = {59, 23, 31, 12, 7};

const char *schedule_parse(const char *spec, struct schedule *j) {
    const char *p = spec;
    for (int i = 0; i < 5; i++) {
        while (*p == ' ' || *p == '\t') p++;
        const char *start = p;
        while (*p && *p != ' ' && *p != '\t') p++;
        if (p == start || p - start > 255) return NULL;
        char field[256];
        memcpy(field, start, p - start);
        field[p - start] = 0;
        int any;
        if (parse_field(field, LOW[i], HIGH[i], &j->field[i], &any) != 0) return NULL;
        if (i == 2) j->dom_any = any;
        if (i == 4) {
            j->dow_any = any;
            if (j->field[4] & (1ULL << 7)) j->field[4] |= 1;   /* 7 is Sunday too */
        }
    }
    return p;
}

int schedule_matches(const struct schedule *j, time_t t) {
    struct tm tm;
    gmtime_r(&t, &tm);
    if (!(j->field[0] >> tm.tm_min & 1) || !(j->field[1] >> tm.tm_hour & 1) || !(j->field[3] >> (tm.tm_mon + 1) & 1))
        return 0;
    int dom = j->field[2] >> tm.tm_mday & 1, dow = j->field[4] >> tm.tm_wday & 1;
    /* Vixie cron: when both day fields are restricted, either one matching is enough. */
    if (!j->dom_any && !j->dow_any) return dom || dow;
    return dom && dow;
}

