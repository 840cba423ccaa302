/* modelcycle.core._native: the few system-call loops that Python makes slow.
 *
 * scan_folder: one folder's entries and their stat fields, read without the GIL.
 * `dataset status` and re-adds stat every file of a folder on every run. In Python each
 * file costs an os.DirEntry, an os.stat_result of twenty-odd fields and the bytecode
 * around them: about twice the system calls' own time. Here the folder is read and its
 * files are stat'ed by two threads with the GIL released, and each file becomes one
 * tuple.
 *
 * encode_file_rows: a file manifest's JSON, four times as fast as json.dumps writes it.
 *
 * file_manifest_oids: the blobs a file manifest references, without decoding it all.
 *
 * match_cached: which scanned files the stat cache knows, and their manifest entries.
 *
 * syncfs: syncfs(2), which the os module lacks (ctypes costs 3 ms to import).
 *
 * Built at install by hatch_build.py where a C compiler is; the package falls back to
 * os.scandir and ctypes without it (modelcycle.data.files, modelcycle.blobs.local).
 */
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* What an entry is, as scan() needs it. */
enum { KIND_FILE = 0, KIND_DIR = 1, KIND_OTHER = 2 };

typedef struct {
    char *name;
    unsigned char d_type;
    int kind;
    int error; /* errno of a failed stat, or 0 */
    struct stat st;
} entry_t;

typedef struct {
    int dfd;
    entry_t *entries;
    size_t start, stop;
} job_t;

/* Classify one entry as os.DirEntry.is_file() / is_dir(follow_symlinks=False) do, and
 * stat it as DirEntry.stat() does (following a link to a file). */
/* An entry whose stat failed with err: as os.DirEntry.is_file() does, a link to nothing
 * (ENOENT) is no file; any other failure (EACCES, ELOOP, a regular file gone) is an
 * error for the caller to raise. */
static void stat_failed(entry_t *e, int err) {
    if (err == ENOENT && e->d_type != DT_REG) {
        e->kind = KIND_OTHER;
        return;
    }
    e->kind = KIND_FILE;
    e->error = err;
}

static void stat_entry(int dfd, entry_t *e) {
    if (e->d_type == DT_DIR) {
        e->kind = KIND_DIR;
        return;
    }
    if (e->d_type == DT_UNKNOWN) {
        struct stat lst;
        if (fstatat(dfd, e->name, &lst, AT_SYMLINK_NOFOLLOW) != 0) {
            stat_failed(e, errno);
            return;
        }
        if (S_ISDIR(lst.st_mode)) {
            e->kind = KIND_DIR;
            return;
        }
        if (S_ISREG(lst.st_mode)) {
            e->kind = KIND_FILE;
            e->st = lst;
            return;
        }
        if (!S_ISLNK(lst.st_mode)) {
            e->kind = KIND_OTHER;
            return;
        }
    } else if (e->d_type != DT_REG && e->d_type != DT_LNK) {
        e->kind = KIND_OTHER; /* sockets, fifos, devices */
        return;
    }
    if (fstatat(dfd, e->name, &e->st, 0) != 0) {
        stat_failed(e, errno);
        return;
    }
    e->kind = S_ISREG(e->st.st_mode) ? KIND_FILE : KIND_OTHER;
}

/* st_mtime_ns as os.stat gives it, past the year 2262 too. */
static PyObject *mtime_ns(const struct stat *st) {
    long long ns;
    if (!__builtin_mul_overflow((long long)st->st_mtim.tv_sec, 1000000000LL, &ns) &&
        !__builtin_add_overflow(ns, (long long)st->st_mtim.tv_nsec, &ns))
        return PyLong_FromLongLong(ns);
    PyObject *sec = PyLong_FromLongLong((long long)st->st_mtim.tv_sec);
    PyObject *billion = PyLong_FromLong(1000000000L);
    PyObject *nsec = PyLong_FromLong(st->st_mtim.tv_nsec);
    PyObject *scaled = sec && billion ? PyNumber_Multiply(sec, billion) : NULL;
    PyObject *result = scaled && nsec ? PyNumber_Add(scaled, nsec) : NULL;
    Py_XDECREF(sec);
    Py_XDECREF(billion);
    Py_XDECREF(nsec);
    Py_XDECREF(scaled);
    return result;
}

static void *run_job(void *arg) {
    job_t *job = (job_t *)arg;
    for (size_t i = job->start; i < job->stop; i++)
        stat_entry(job->dfd, &job->entries[i]);
    return NULL;
}

static void free_entries(entry_t *entries, size_t n) {
    for (size_t i = 0; i < n; i++)
        free(entries[i].name);
    free(entries);
}

/* Read the folder open at dfd (closed here) into *out; 0, or an errno. */
static int read_folder(int dfd, entry_t **out, size_t *count) {
    DIR *dir = fdopendir(dfd);
    if (dir == NULL) {
        int err = errno;
        close(dfd);
        return err;
    }
    size_t n = 0, cap = 256;
    entry_t *entries = malloc(cap * sizeof(entry_t));
    int err = entries == NULL ? ENOMEM : 0;
    struct dirent *d;
    while (!err) {
        errno = 0;
        d = readdir(dir);
        if (d == NULL) {
            err = errno;
            break;
        }
        if (d->d_name[0] == '.' &&
            (d->d_name[1] == '\0' || (d->d_name[1] == '.' && d->d_name[2] == '\0')))
            continue;
        if (n == cap) {
            entry_t *grown = realloc(entries, 2 * cap * sizeof(entry_t));
            if (grown == NULL) {
                err = ENOMEM;
                break;
            }
            entries = grown;
            cap *= 2;
        }
        entry_t *e = &entries[n];
        memset(e, 0, sizeof(*e));
        e->name = strdup(d->d_name);
        if (e->name == NULL) {
            err = ENOMEM;
            break;
        }
        e->d_type = d->d_type;
        n++;
    }
    if (err) {
        closedir(dir);
        free_entries(entries, n);
        return err;
    }
    /* Stat on two threads: a stat of a cached inode is short, and the other thread's
     * system calls overlap it. Small folders stay on this one. */
    int fd = dirfd(dir);
    size_t half = n / 2;
    pthread_t helper;
    job_t jobs[2] = {{fd, entries, 0, half}, {fd, entries, half, n}};
    int threaded = n >= 512 && pthread_create(&helper, NULL, run_job, &jobs[0]) == 0;
    if (!threaded)
        jobs[1].start = 0;
    run_job(&jobs[1]);
    if (threaded)
        pthread_join(helper, NULL);
    closedir(dir);
    *out = entries;
    *count = n;
    return 0;
}

static int by_name(const void *a, const void *b) {
    return strcmp(((const entry_t *)a)->name, ((const entry_t *)b)->name);
}

/* A new instance of the tuple type `type` holding the n items (references stolen), or
 * NULL when any item is NULL (the others are released) or the allocation fails. */
static PyObject *new_tuple(PyTypeObject *type, PyObject **items, Py_ssize_t n) {
    int complete = 1;
    for (Py_ssize_t k = 0; k < n; k++)
        complete = complete && items[k] != NULL;
    PyObject *t = complete ? type->tp_alloc(type, n) : NULL;
    for (Py_ssize_t k = 0; k < n; k++) {
        if (t == NULL)
            Py_XDECREF(items[k]);
        else
            PyTuple_SET_ITEM(t, k, items[k]);
    }
    return t;
}

static PyObject *scan_folder(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *prefix, *rel;
    PyTypeObject *file_type;
    if (!PyArg_ParseTuple(args, "UUO!", &prefix, &rel, &PyType_Type, &file_type))
        return NULL;
    if (!PyType_IsSubtype(file_type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "file_type must be a tuple type");
        return NULL;
    }
    PyObject *path_bytes = NULL;
    if (!PyUnicode_FSConverter(prefix, &path_bytes))
        return NULL;
    const char *path = PyBytes_AS_STRING(path_bytes);
    entry_t *entries = NULL;
    size_t n = 0;
    int err;
    Py_BEGIN_ALLOW_THREADS
    int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    err = dfd < 0 ? errno : read_folder(dfd, &entries, &n);
    if (!err) /* sorted here, the caller's sort of the whole tree finds runs */
        qsort(entries, n, sizeof(entry_t), by_name);
    Py_END_ALLOW_THREADS
    Py_DECREF(path_bytes);
    if (err) {
        errno = err;
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, prefix);
        return NULL;
    }
    PyObject *files = PyList_New(0), *folders = PyList_New(0), *result = NULL;
    for (size_t i = 0; files != NULL && folders != NULL && i < n; i++) {
        entry_t *e = &entries[i];
        if (e->kind == KIND_OTHER)
            continue;
        PyObject *name = PyUnicode_DecodeFSDefault(e->name);
        if (name == NULL)
            goto done;
        if (e->error) {
            PyObject *where = PyUnicode_Concat(prefix, name);
            errno = e->error;
            if (where != NULL)
                PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, where);
            Py_XDECREF(where);
            Py_DECREF(name);
            goto done;
        }
        int failed;
        if (e->kind == KIND_DIR) {
            failed = PyList_Append(folders, name);
        } else {
            PyObject *key_items[3] = {PyLong_FromLongLong((long long)e->st.st_size),
                                      mtime_ns(&e->st),
                                      PyLong_FromUnsignedLongLong(e->st.st_ino)};
            /* (rel path, absolute path, stat key, mode): only the owner's execute bit
             * is kept, as modelcycle.data.files does */
            PyObject *items[4] = {PyUnicode_Concat(rel, name), PyUnicode_Concat(prefix, name),
                                  new_tuple(&PyTuple_Type, key_items, 3),
                                  PyLong_FromLong((e->st.st_mode & S_IXUSR) ? 0755 : 0644)};
            PyObject *item = new_tuple(file_type, items, 4);
            failed = item == NULL || PyList_Append(files, item) != 0;
            Py_XDECREF(item);
        }
        Py_DECREF(name);
        if (failed)
            goto done;
    }
    if (files != NULL && folders != NULL)
        result = PyTuple_Pack(2, files, folders);
done:
    Py_XDECREF(files);
    Py_XDECREF(folders);
    free_entries(entries, n);
    return result;
}

static PyObject *sync_filesystem(PyObject *Py_UNUSED(self), PyObject *arg) {
    int fd = PyObject_AsFileDescriptor(arg);
    if (fd < 0)
        return NULL;
    int failed;
    Py_BEGIN_ALLOW_THREADS
    failed = syncfs(fd) != 0;
    Py_END_ALLOW_THREADS
    if (failed)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

/* --- encode_file_rows ---------------------------------------------------------- */

typedef struct {
    char *data;
    size_t len, cap;
} buffer_t;

static int put(buffer_t *b, const char *s, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1 << 16;
        while (cap < b->len + n)
            cap *= 2;
        char *grown = realloc(b->data, cap);
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    return 0;
}

/* A JSON string as json.dumps writes it (ensure_ascii): printable ASCII but for the
 * quote and the backslash is copied, anything else goes through json's own encoder. */
static int put_string(buffer_t *b, PyObject *s, PyObject *escape) {
    if (!PyUnicode_Check(s)) {
        PyErr_SetString(PyExc_TypeError, "a manifest row's path and oid must be str");
        return -1;
    }
    if (PyUnicode_IS_ASCII(s)) {
        const char *chars = (const char *)PyUnicode_DATA(s);
        Py_ssize_t n = PyUnicode_GET_LENGTH(s), i = 0;
        while (i < n && chars[i] >= ' ' && chars[i] <= '~' && chars[i] != '"' && chars[i] != '\\')
            i++;
        if (i == n)
            return put(b, "\"", 1) || put(b, chars, (size_t)n) || put(b, "\"", 1);
    }
    PyObject *quoted = PyObject_CallOneArg(escape, s);
    if (quoted == NULL)
        return -1;
    Py_ssize_t n;
    const char *chars = PyUnicode_AsUTF8AndSize(quoted, &n);
    int failed = chars == NULL || put(b, chars, (size_t)n);
    Py_DECREF(quoted);
    return failed ? -1 : 0;
}

static int put_int(buffer_t *b, PyObject *value) {
    long long v = PyLong_AsLongLong(value);
    if (v == -1 && PyErr_Occurred())
        return -1;
    char digits[24];
    int n = snprintf(digits, sizeof digits, "%lld", v);
    return put(b, digits, (size_t)n);
}

static PyObject *encode_file_rows(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *rows, *escape;
    if (!PyArg_ParseTuple(args, "O!O", &PyList_Type, &rows, &escape))
        return NULL;
    /* A tuple of the rows: escape runs Python code, which must not pull a row away. */
    PyObject *held = PyList_AsTuple(rows);
    if (held == NULL)
        return NULL;
    buffer_t b = {NULL, 0, 0};
    int failed = put(&b, "{\"kind\":\"files\",\"files\":[", 25);
    Py_ssize_t n = PyTuple_GET_SIZE(held);
    for (Py_ssize_t i = 0; !failed && i < n; i++) {
        PyObject *row = PyTuple_GET_ITEM(held, i);
        if (!PyTuple_Check(row) || PyTuple_GET_SIZE(row) != 4 ||
            !PyLong_Check(PyTuple_GET_ITEM(row, 2)) || !PyLong_Check(PyTuple_GET_ITEM(row, 3))) {
            PyErr_SetString(PyExc_TypeError, "a manifest row is (path, oid, size, mode)");
            failed = 1;
            break;
        }
        failed = (i && put(&b, ",", 1)) || put(&b, "[", 1) ||
                 put_string(&b, PyTuple_GET_ITEM(row, 0), escape) || put(&b, ",", 1) ||
                 put_string(&b, PyTuple_GET_ITEM(row, 1), escape) || put(&b, ",", 1) ||
                 put_int(&b, PyTuple_GET_ITEM(row, 2)) || put(&b, ",", 1) ||
                 put_int(&b, PyTuple_GET_ITEM(row, 3)) || put(&b, "]", 1);
    }
    failed = failed || put(&b, "]}", 2);
    PyObject *result = failed ? NULL : PyBytes_FromStringAndSize(b.data, (Py_ssize_t)b.len);
    free(b.data);
    Py_DECREF(held);
    return result;
}

/* --- file_manifest_oids ---------------------------------------------------------- */

/* The end of the JSON string starting at p (at its opening quote), or NULL. */
/* The end of the JSON string starting at p (at its opening quote), or NULL where it is
 * not one json.dumps(ensure_ascii=True) writes: printable ASCII and valid escapes only,
 * so that whatever json would refuse is left to json to refuse. */
static const char *skip_string(const char *p, const char *end) {
    if (p >= end || *p != '"')
        return NULL;
    for (p++; p < end; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"')
            return p + 1;
        if (c < 0x20 || c >= 0x7f)
            return NULL;
        if (c != '\\')
            continue;
        if (++p >= end)
            return NULL;
        if (*p == 'u') {
            for (int k = 0; k < 4; k++)
                if (++p >= end || !isxdigit((unsigned char)*p))
                    return NULL;
        } else if (!strchr("\"\\/bfnrt", *p) || *p == '\0') {
            return NULL;
        }
    }
    return NULL;
}

/* The end of the digits at p: a JSON integer of no leading zeros, or NULL. */
static const char *skip_digits(const char *p, const char *end) {
    const char *start = p;
    while (p < end && *p >= '0' && *p <= '9')
        p++;
    if (p == start || (*start == '0' && p - start > 1))
        return NULL;
    return p;
}

static PyObject *file_manifest_oids(PyObject *Py_UNUSED(self), PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) != 0)
        return NULL;
    const char *p = view.buf, *end = p + view.len;
    static const char head[] = "{\"kind\":\"files\",\"files\":[";
    const size_t head_len = sizeof head - 1;
    PyObject *oids = PySet_New(NULL);
    int ok = oids != NULL && (size_t)view.len >= head_len && memcmp(p, head, head_len) == 0;
    p += ok ? head_len : 0;
    for (int first = 1; ok && p < end && *p != ']'; first = 0) {
        /* [path,oid,size,mode] as json.dumps(separators=(",", ":")) writes it */
        if (!first && *p++ != ',') {
            ok = 0;
            break;
        }
        const char *oid;
        if (p >= end || *p++ != '[' || (p = skip_string(p, end)) == NULL || p >= end ||
            *p++ != ',' || (oid = p, p = skip_string(p, end)) == NULL || p >= end ||
            *p++ != ',' || (p = skip_digits(p, end)) == NULL || p >= end || *p++ != ',' ||
            (p = skip_digits(p, end)) == NULL || p >= end || *p++ != ']') {
            ok = 0;
            break;
        }
        /* oid .. p: the quoted oid and ",size,mode]"; find its closing quote */
        const char *close = memchr(oid + 1, '"', (size_t)(p - oid - 1));
        if (close == NULL || memchr(oid + 1, '\\', (size_t)(close - oid - 1)) != NULL) {
            ok = 0; /* an escaped oid is none of ours: let json read it */
            break;
        }
        PyObject *s = PyUnicode_DecodeASCII(oid + 1, close - oid - 1, NULL);
        if (s == NULL) {
            PyErr_Clear();
            ok = 0;
            break;
        }
        int failed = PySet_Add(oids, s);
        Py_DECREF(s);
        if (failed) {
            Py_CLEAR(oids);
            break;
        }
    }
    ok = ok && end - p == 2 && p[0] == ']' && p[1] == '}';
    PyBuffer_Release(&view);
    if (oids == NULL)
        return NULL;
    if (!ok) {
        Py_DECREF(oids);
        Py_RETURN_NONE;
    }
    return oids;
}

/* --- match_cached ---------------------------------------------------------------- */

static int append_index(PyObject *list, Py_ssize_t i) {
    PyObject *n = PyLong_FromSsize_t(i);
    int failed = n == NULL || PyList_Append(list, n) != 0;
    Py_XDECREF(n);
    return failed ? -1 : 0;
}

static PyObject *match_cached(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *files, *cached, *prefix, *known;
    PyTypeObject *entry_type;
    if (!PyArg_ParseTuple(args, "O!O!UO!O!", &PyList_Type, &files, &PyDict_Type, &cached,
                          &prefix, &PySet_Type, &known, &PyType_Type, &entry_type))
        return NULL;
    if (!PyType_IsSubtype(entry_type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "entry_type must be a tuple type");
        return NULL;
    }
    /* Held: comparing keys may run Python code, which must not free what is in use. */
    PyObject *held = PyList_AsTuple(files), *hit = NULL;
    if (held == NULL)
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(held), cut = PyUnicode_GET_LENGTH(prefix);
    Py_ssize_t named = 0;
    PyObject *entries = PyList_New(n), *todo = PyList_New(0), *unstored = PyList_New(0);
    PyObject *result = NULL;
    if (entries == NULL || todo == NULL || unstored == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_CLEAR(hit);
        PyObject *f = PyTuple_GET_ITEM(held, i);
        if (!PyTuple_Check(f) || PyTuple_GET_SIZE(f) != 4 ||
            !PyUnicode_Check(PyTuple_GET_ITEM(f, 0)) || !PyUnicode_Check(PyTuple_GET_ITEM(f, 1)) ||
            !PyTuple_Check(PyTuple_GET_ITEM(f, 2)) || PyTuple_GET_SIZE(PyTuple_GET_ITEM(f, 2)) < 1) {
            PyErr_SetString(PyExc_TypeError, "a scanned file is (rel, abspath, key, mode)");
            goto done;
        }
        PyObject *rel = PyTuple_GET_ITEM(f, 0), *abspath = PyTuple_GET_ITEM(f, 1);
        PyObject *key = PyTuple_GET_ITEM(f, 2), *mode = PyTuple_GET_ITEM(f, 3);
        Py_ssize_t len = PyUnicode_GET_LENGTH(abspath);
        int under = PyUnicode_Tailmatch(abspath, prefix, 0, cut, -1);
        if (under < 0)
            goto done;
        if (!under) { /* not under the folder any more: the caller hashes every file */
            Py_INCREF(Py_None);
            result = Py_None;
            goto done;
        }
        /* The cache's key is the path under the folder: the file's own relative path
         * when it was scanned from this folder (the usual case), else cut from it. */
        PyObject *name;
        int same = PyUnicode_GET_LENGTH(rel) == len - cut &&
                   PyUnicode_Tailmatch(abspath, rel, cut, len, 1) == 1;
        if (same) {
            name = rel;
            Py_INCREF(name);
        } else if ((name = PyUnicode_Substring(abspath, cut, len)) == NULL) {
            goto done;
        }
        hit = PyDict_GetItemWithError(cached, name);
        Py_DECREF(name);
        if (hit == NULL && PyErr_Occurred())
            goto done;
        Py_XINCREF(hit);
        int fresh = 0;
        if (hit != NULL && PyTuple_Check(hit) && PyTuple_GET_SIZE(hit) == 2) {
            fresh = PyObject_RichCompareBool(PyTuple_GET_ITEM(hit, 0), key, Py_EQ);
            if (fresh < 0)
                goto done;
        }
        named += hit != NULL;
        if (!fresh) {
            Py_INCREF(Py_None);
            PyList_SET_ITEM(entries, i, Py_None);
            if (append_index(todo, i))
                goto done;
            continue;
        }
        PyObject *oid = PyTuple_GET_ITEM(hit, 1);
        PyObject *items[4] = {rel, oid, PyTuple_GET_ITEM(key, 0), mode};
        for (int k = 0; k < 4; k++)
            Py_INCREF(items[k]);
        PyObject *entry = new_tuple(entry_type, items, 4);
        if (entry == NULL)
            goto done;
        PyList_SET_ITEM(entries, i, entry);
        int stored = PySet_Contains(known, oid);
        if (stored < 0 || (!stored && append_index(unstored, i)))
            goto done;
    }
    result = Py_BuildValue("(OOOn)", entries, todo, unstored, named);
done:
    /* Slots of entries never reached are NULL, which list deallocation skips. */
    Py_XDECREF(hit);
    Py_DECREF(held);
    Py_XDECREF(entries);
    Py_XDECREF(todo);
    Py_XDECREF(unstored);
    return result;
}

static PyMethodDef methods[] = {
    {"scan_folder", scan_folder, METH_VARARGS,
     "scan_folder(prefix, rel, file_type) -> (files, folders): the regular files of the\n"
     "folder prefix (ending in '/'; links to files followed) as file_type(rel + name,\n"
     "prefix + name, (size, mtime_ns, inode), 0o755 or 0o644), and the names of its\n"
     "subfolders (links to folders left out), each sorted by the bytes of the name."},
    {"encode_file_rows", encode_file_rows, METH_VARARGS,
     "encode_file_rows(rows, escape) -> bytes: the file manifest of the sorted rows\n"
     "(path, oid, size, mode), byte for byte as json.dumps(separators=(',', ':')) writes\n"
     "it; escape is json.encoder.encode_basestring_ascii, for strings that need it."},
    {"match_cached", match_cached, METH_VARARGS,
     "match_cached(files, cached, prefix, known, entry_type) -> (entries, todo, unstored,\n"
     "named), or None when a file is not under prefix: the stat cache's verdict on each\n"
     "scanned file, as modelcycle.data.files.ingest makes it in Python."},
    {"file_manifest_oids", file_manifest_oids, METH_O,
     "file_manifest_oids(data) -> set of the oids in the file manifest data, or None\n"
     "when data is not laid out as encode_file_rows writes it (json reads it then)."},
    {"syncfs", sync_filesystem, METH_O,
     "syncfs(fd): write out every dirty page of the filesystem holding the open fd."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_native", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&module); }
