/* modelcycle.core._native: the few system-call loops that Python makes slow.
 *
 * scan_folder: one folder's entries and their stat fields, read without the GIL.
 * `dataset status` and re-adds stat every file of a folder on every run. In Python each
 * file costs an os.DirEntry, an os.stat_result of twenty-odd fields and the bytecode
 * around them: about twice the system calls' own time. Here the folder is read and its
 * files are stat'ed by two threads with the GIL released, and each file becomes one
 * tuple.
 *
 * syncfs: syncfs(2), which the os module lacks (ctypes costs 3 ms to import).
 *
 * Built at install by hatch_build.py where a C compiler is; the package falls back to
 * os.scandir and ctypes without it (modelcycle.data.files, modelcycle.blobs.local).
 */
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>

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
static void stat_entry(int dfd, entry_t *e) {
    if (e->d_type == DT_DIR) {
        e->kind = KIND_DIR;
        return;
    }
    if (e->d_type == DT_UNKNOWN) {
        struct stat lst;
        if (fstatat(dfd, e->name, &lst, AT_SYMLINK_NOFOLLOW) != 0) {
            e->kind = KIND_OTHER; /* gone since the folder was read: as os.scandir skips it */
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
        /* A link to nothing is not a file; a regular file that vanished is an error
         * for the caller to report, as DirEntry.stat() raises it. */
        e->kind = (e->d_type == DT_REG) ? KIND_FILE : KIND_OTHER;
        e->error = (e->d_type == DT_REG) ? errno : 0;
        return;
    }
    e->kind = S_ISREG(e->st.st_mode) ? KIND_FILE : KIND_OTHER;
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

static PyObject *scan_folder(PyObject *Py_UNUSED(self), PyObject *arg) {
    PyObject *path_bytes = NULL;
    if (!PyUnicode_FSConverter(arg, &path_bytes))
        return NULL;
    const char *path = PyBytes_AS_STRING(path_bytes);
    entry_t *entries = NULL;
    size_t n = 0;
    int err;
    Py_BEGIN_ALLOW_THREADS
    int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    err = dfd < 0 ? errno : read_folder(dfd, &entries, &n);
    Py_END_ALLOW_THREADS
    if (err) {
        errno = err;
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, arg);
        Py_DECREF(path_bytes);
        return NULL;
    }
    Py_DECREF(path_bytes);
    PyObject *files = PyList_New(0), *folders = PyList_New(0), *result = NULL;
    for (size_t i = 0; files != NULL && folders != NULL && i < n; i++) {
        entry_t *e = &entries[i];
        if (e->kind == KIND_OTHER)
            continue;
        PyObject *name = PyUnicode_DecodeFSDefault(e->name);
        if (name == NULL)
            goto done;
        if (e->error) {
            errno = e->error;
            PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, name);
            Py_DECREF(name);
            goto done;
        }
        int failed;
        if (e->kind == KIND_DIR) {
            failed = PyList_Append(folders, name);
            Py_DECREF(name);
        } else {
            long long mtime_ns =
                (long long)e->st.st_mtim.tv_sec * 1000000000LL + e->st.st_mtim.tv_nsec;
            PyObject *item = Py_BuildValue("(N(LLK)I)", name, (long long)e->st.st_size,
                                           mtime_ns, (unsigned long long)e->st.st_ino,
                                           (unsigned int)e->st.st_mode);
            failed = item == NULL || PyList_Append(files, item) != 0;
            Py_XDECREF(item);
        }
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

static PyMethodDef methods[] = {
    {"scan_folder", scan_folder, METH_O,
     "scan_folder(path) -> (files, folders): [(name, (size, mtime_ns, inode), st_mode)]\n"
     "of the folder's regular files (links to files followed) and the names of its\n"
     "subfolders (links to folders left out), in no particular order."},
    {"syncfs", sync_filesystem, METH_O,
     "syncfs(fd): write out every dirty page of the filesystem holding the open fd."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_native", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&module); }
