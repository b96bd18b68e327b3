<?php

declare(strict_types=1);

namespace Phase\Sdk\Transport;

use Phase\Sdk\Exception\NodeException;
use Phase\Sdk\Exception\ProtocolException;
use Phase\Sdk\Exception\TransportException;

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
            array_map('unlink', glob("{$dir}/*") ?: []);
            rmdir($dir);
        }
    }
}
