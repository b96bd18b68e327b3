<?php

declare(strict_types=1);

namespace Phase\Sdk;

use Phase\Sdk\Exception\ProtocolException;

/**
 * A job's files in their canonical forms (docs/formats.md, "Job files"): the digest of the
 * trees a job is given (part of its job id and signed as `files_sha256`) and of the changes it
 * left (`left_sha256`). Files are held in the request form of `POST /v1/jobs`:
 * `['mounts' => [['guest' => '/work', 'entries' => [['path' => …, 'data' => base64] | …]]],
 *   'limits' => [...]]`.
 */
final class Files
{
    public const TREE_DOMAIN = "phase-tree/v1\n";
    public const CHANGES_DOMAIN = "phase-changes/v1\n";
    public const LIMITS = ['bytes', 'entries', 'path_bytes', 'depth', 'open_files'];
    /** The defaults of formats.md, for the limits a client leaves unset. */
    public const DEFAULT_LIMITS = ['bytes' => 16 << 20, 'entries' => 4096, 'path_bytes' => 1024, 'depth' => 64, 'open_files' => 128];

    /** Orders paths name by name, as a tree walk meets them (`a/b` before `a.b`). */
    public static function pathOrder(string $a, string $b): int
    {
        $x = explode('/', $a);
        $y = explode('/', $b);
        $n = min(count($x), count($y));
        for ($i = 0; $i < $n; $i++) {
            $c = strcmp($x[$i], $y[$i]);
            if ($c !== 0) {
                return $c < 0 ? -1 : 1;
            }
        }
        return count($x) <=> count($y);
    }

    /** A kind's canonical bytes: 1 dir, 2 file (size, sha256, executable), 3 link (target). */
    private static function kindBytes(array $kind): string
    {
        return match ($kind['kind']) {
            'dir' => "\x01",
            'file' => "\x02" . Canonical::u64($kind['size']) . hex2bin($kind['sha256']) . ($kind['executable'] ? "\x01" : "\x00"),
            'symlink' => "\x03" . Canonical::u32(strlen($kind['target'])) . $kind['target'],
        };
    }

    /**
     * One request entry as a kind (`data` hashed here).
     * @return array{kind:string,size?:int,sha256?:string,executable?:bool,target?:string}
     */
    private static function entryKind(array $e): array
    {
        if (isset($e['data'])) {
            $bytes = base64_decode((string)$e['data'], true);
            if ($bytes === false) {
                throw new \InvalidArgumentException("file {$e['path']}: data is not base64");
            }
            return ['kind' => 'file', 'size' => strlen($bytes), 'sha256' => hash('sha256', $bytes), 'executable' => ($e['executable'] ?? false) === true];
        }
        if (isset($e['sha256'])) {
            $exec = ($e['executable'] ?? false) === true;
            return ['kind' => 'file', 'size' => (int)$e['size'], 'sha256' => strtolower((string)$e['sha256']), 'executable' => $exec];
        }
        if (($e['dir'] ?? false) === true) {
            return ['kind' => 'dir'];
        }
        return ['kind' => 'symlink', 'target' => (string)$e['symlink']];
    }

    /**
     * The digest (raw) of `files` (request form) under `limits` (all five, as applied).
     * @param array<string,int> $limits
     */
    public static function treeDigest(array $files, array $limits): string
    {
        $out = self::TREE_DOMAIN . Canonical::u32(count($files['mounts']));
        foreach ($files['mounts'] as $m) {
            // Keyed by "/path": a path of digits alone would become an integer key.
            $entries = [];
            foreach ($m['entries'] ?? [] as $e) {
                $entries['/' . $e['path']] = self::entryKind($e);
            }
            // Parents a client left out are directories.
            foreach (array_keys($entries) as $key) {
                for ($p = dirname(substr($key, 1)); $p !== '.' && $p !== ''; $p = dirname($p)) {
                    $entries['/' . $p] ??= ['kind' => 'dir'];
                }
            }
            uksort($entries, static fn (string $a, string $b) => self::pathOrder(substr($a, 1), substr($b, 1)));
            $out .= Canonical::u32(strlen($m['guest'])) . $m['guest'] . Canonical::u32(count($entries));
            foreach ($entries as $key => $kind) {
                $path = substr($key, 1);
                $out .= Canonical::u32(strlen($path)) . $path . self::kindBytes($kind);
            }
        }
        foreach (self::LIMITS as $k) {
            $out .= Canonical::u64($limits[$k]);
        }
        return hash('sha256', $out, true);
    }

    /**
     * An answer's `files` as changes, each file's bytes checked against its entry.
     * @return list<array{mount:int,path:string,kind:string,size?:int,sha256?:string,executable?:bool,target?:string,data?:string}>
     */
    public static function parseLeft(mixed $files, string $where): array
    {
        if (!is_array($files) || !array_is_list($files)) {
            throw new ProtocolException("{$where}: answer field files must be an array");
        }
        $out = [];
        foreach ($files as $c) {
            if (!is_array($c) || !is_int($c['mount'] ?? null) || !is_string($c['path'] ?? null)) {
                throw new ProtocolException("{$where}: an entry of files has no mount or path");
            }
            $change = ['mount' => $c['mount'], 'path' => $c['path']];
            if (($c['removed'] ?? false) === true) {
                $change['kind'] = 'removed';
            } elseif (($c['dir'] ?? false) === true) {
                $change['kind'] = 'dir';
            } elseif (is_string($c['symlink'] ?? null)) {
                $change += ['kind' => 'symlink', 'target' => $c['symlink']];
            } else {
                $data = is_string($c['data'] ?? null) ? base64_decode($c['data'], true) : false;
                if ($data === false || !is_int($c['size'] ?? null) || !is_string($c['sha256'] ?? null)) {
                    throw new ProtocolException("{$where}: the file {$c['path']} has no size, sha256 or base64 data");
                }
                $change += ['kind' => 'file', 'size' => $c['size'], 'sha256' => strtolower($c['sha256']),
                    'executable' => ($c['executable'] ?? false) === true, 'data' => $data];
            }
            $out[] = $change;
        }
        return $out;
    }

    /** The digest (raw) of changes as `parseLeft` gives them, in canonical order. */
    public static function changesDigest(array $changes): string
    {
        usort($changes, static fn ($a, $b) => ($a['mount'] <=> $b['mount']) ?: self::pathOrder($a['path'], $b['path']));
        $out = self::CHANGES_DOMAIN . Canonical::u32(count($changes));
        foreach ($changes as $c) {
            $out .= Canonical::u32($c['mount']) . Canonical::u32(strlen($c['path'])) . $c['path']
                . ($c['kind'] === 'removed' ? "\x00" : self::kindBytes($c));
        }
        return hash('sha256', $out, true);
    }

    /**
     * `files` (request form) with every file named by its hash and size instead of its bytes:
     * what a job handle's token keeps to verify the result later (the digest needs no bytes).
     */
    public static function withoutData(array $files): array
    {
        foreach ($files['mounts'] as $i => $m) {
            foreach ($m['entries'] ?? [] as $j => $e) {
                if (isset($e['data'])) {
                    $bytes = (string)base64_decode((string)$e['data'], true);
                    unset($e['data']);
                    $files['mounts'][$i]['entries'][$j] = $e + ['sha256' => hash('sha256', $bytes), 'size' => strlen($bytes)];
                }
            }
        }
        return $files;
    }

    /**
     * A local directory as a mount's entries (request form): files inline, links as links.
     * @return list<array<string,mixed>>
     */
    public static function readDirectory(string $dir): array
    {
        if (!is_dir($dir)) {
            throw new \InvalidArgumentException("{$dir} is not a directory");
        }
        $entries = [];
        $todo = [''];
        while ($todo !== []) {
            $rel = array_pop($todo);
            $here = $rel === '' ? $dir : "{$dir}/{$rel}";
            $names = scandir($here);
            if ($names === false) {
                throw new \InvalidArgumentException("cannot list {$here}");
            }
            foreach ($names as $name) {
                if ($name === '.' || $name === '..') {
                    continue;
                }
                $path = $rel === '' ? $name : "{$rel}/{$name}";
                $full = "{$dir}/{$path}";
                if (is_link($full)) {
                    $entries[] = ['path' => $path, 'symlink' => (string)readlink($full)];
                } elseif (is_dir($full)) {
                    $entries[] = ['path' => $path, 'dir' => true];
                    $todo[] = $path;
                } elseif (is_file($full)) {
                    $bytes = file_get_contents($full);
                    if ($bytes === false) {
                        throw new \InvalidArgumentException("cannot read {$full}");
                    }
                    $entry = ['path' => $path, 'data' => base64_encode($bytes)];
                    if (is_executable($full)) {
                        $entry['executable'] = true;
                    }
                    $entries[] = $entry;
                } else {
                    throw new \InvalidArgumentException("{$full}: not a regular file, directory or link");
                }
            }
        }
        return $entries;
    }
}
