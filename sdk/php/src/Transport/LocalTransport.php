<?php

declare(strict_types=1);

namespace Phase\Sdk\Transport;

use Phase\Sdk\Exception\NodeException;
use Phase\Sdk\Exception\ProtocolException;
use Phase\Sdk\Exception\TransportException;
use Phase\Sdk\Files;

/**
 * Runs jobs with the local `phase` binary (`phase run --json`): the same answer and receipt as
 * a node, signed by a throwaway key or the key in `$dataDir`. No network.
 */
final class LocalTransport implements TransportInterface
{
    public function __construct(private readonly string $phaseBinary = 'phase', private readonly ?string $dataDir = null)
    {
    }

    public function endpoints(): array
    {
        return ['local'];
    }

    public function execute(string $endpoint, array $request, float $timeout): array
    {
        if (!isset($request['module'])) {
            throw new NodeException(400, 'invalid_request', 'the local transport needs the module bytes, not only its hash', 'local');
        }
        $fileLimits = $request['files']['limits'] ?? [];
        foreach ($fileLimits as $k => $v) {
            if (!in_array($k, Files::LIMITS, true) || !is_int($v)) {
                throw new NodeException(422, 'invalid_files', "unknown file limit {$k}", 'local');
            }
        }
        $dir = sys_get_temp_dir() . '/phase-sdk-' . bin2hex(random_bytes(6));
        if (!mkdir($dir, 0700)) {
            throw new TransportException("cannot create {$dir}");
        }
        try {
            file_put_contents("{$dir}/module.wasm", base64_decode($request['module'], true));
            file_put_contents("{$dir}/input", base64_decode($request['input'] ?? '', true));
            $cmd = [$this->phaseBinary, 'run', "{$dir}/module.wasm", '--input', "{$dir}/input", '--json'];
            foreach ($request['args'] ?? [] as $a) {
                array_push($cmd, '--arg', $a);
            }
            foreach ($request['env'] ?? [] as $e) {
                array_push($cmd, '--env', $e);
            }
            foreach ($request['limits'] ?? [] as $k => $v) {
                array_push($cmd, '--' . str_replace('_', '-', $k), (string) $v);
            }
            if ($this->dataDir !== null) {
                array_push($cmd, '--data-dir', $this->dataDir);
            }
            foreach ($fileLimits as $k => $v) {
                array_push($cmd, '--files-' . str_replace('_', '-', $k), (string) $v);
            }
            foreach ($request['files']['mounts'] ?? [] as $i => $mount) {
                array_push($cmd, '--dir', self::writeTree("{$dir}/m{$i}", $mount['entries'] ?? []) . '::' . $mount['guest']);
            }
            $proc = proc_open($cmd, [0 => ['file', '/dev/null', 'r'], 1 => ['file', "{$dir}/out", 'w'], 2 => ['file', "{$dir}/err", 'w']], $pipes);
            if (!is_resource($proc)) {
                throw new TransportException("cannot run {$this->phaseBinary}");
            }
            $deadline = microtime(true) + $timeout;
            while (($st = proc_get_status($proc))['running']) {
                if (microtime(true) > $deadline) {
                    proc_terminate($proc, 9);
                    proc_close($proc);
                    throw new TransportException("{$this->phaseBinary} run: no answer within {$timeout}s");
                }
                usleep(2000);
            }
            proc_close($proc);
            $code = $st['exitcode'];
            $out = (string) file_get_contents("{$dir}/out");
            if ($code !== 0) {
                $err = trim((string) file_get_contents("{$dir}/err"));
                throw new NodeException(422, 'local_error', $err !== '' ? $err : "exit code {$code}", 'local');
            }
            try {
                $data = json_decode($out, true, 32, JSON_THROW_ON_ERROR);
            } catch (\JsonException $e) {
                throw new ProtocolException('phase run --json: not JSON: ' . $e->getMessage());
            }
            return is_array($data) ? $data : throw new ProtocolException('phase run --json: not a JSON object');
        } finally {
            self::remove($dir);
        }
    }

    /** Writes a mount's entries (request form) under `$root`, for `phase run --dir`. */
    private static function writeTree(string $root, array $entries): string
    {
        mkdir($root, 0700);
        foreach ($entries as $e) {
            $path = "{$root}/{$e['path']}";
            if (!is_dir(dirname($path))) {
                mkdir(dirname($path), 0700, true);
            }
            if (isset($e['data'])) {
                file_put_contents($path, base64_decode($e['data'], true));
                chmod($path, ($e['executable'] ?? false) === true ? 0755 : 0644);
            } elseif (($e['dir'] ?? false) === true) {
                is_dir($path) || mkdir($path, 0700, true);
            } elseif (isset($e['symlink'])) {
                symlink($e['symlink'], $path);
            } else {
                throw new NodeException(422, 'invalid_files', "the local transport needs the bytes of {$e['path']}, not only its hash", 'local');
            }
        }
        return $root;
    }

    /** Removes `$path` and everything below it, links as links. */
    private static function remove(string $path): void
    {
        if (is_dir($path) && !is_link($path)) {
            foreach (scandir($path) ?: [] as $name) {
                if ($name !== '.' && $name !== '..') {
                    self::remove("{$path}/{$name}");
                }
            }
            rmdir($path);
        } elseif (file_exists($path) || is_link($path)) {
            unlink($path);
        }
    }
}
