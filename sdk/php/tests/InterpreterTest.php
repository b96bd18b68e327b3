<?php

declare(strict_types=1);

namespace Phase\Sdk\Tests;

use Phase\Sdk\Client;
use Phase\Sdk\Job;
use PHPUnit\Framework\TestCase;

/**
 * A real interpreter, unchanged, on a node at its default limits, here and at the budget of a
 * machine of 1 GiB: CPython for WASI (26 MB) runs a Python script on data files a PHP
 * application sends, and the files it leaves come back verified against the node's signed
 * receipt.
 */
final class InterpreterTest extends TestCase
{
    /** @return array<string,array{list<string>}> */
    public static function budgets(): array
    {
        // The default budget of a machine of 1 GiB (800 MiB available after its kernel and
        // system): three quarters of what is available, less 16 MiB.
        return ['this host' => [[]], 'a 1 GiB machine' => [['--memory-budget', (string) ((800 - 16) * 3 / 4 * 1048576)]]];
    }

    /**
     * @dataProvider budgets
     * @param list<string> $args
     */
    public function testCpythonRunsAScriptOnFilesOnANodeFromPhp(array $args): void
    {
        $node = new NodeProcess($args);
        try {
            $job = Job::fromFile(python_wasm())
                ->withArgs(['/work/summarize.py'])
                ->withFile('/work', 'summarize.py', (string) file_get_contents(REPO . '/wasm-examples/python/summarize.py'))
                ->withFile('/work', 'in/a.csv', "item,qty\napple,3\npear,1\n")
                ->withFile('/work', 'in/b.csv', "item,qty\napple,2\nfig,7\n")
                ->withLimits(fuel: 100_000_000_000, deadlineMs: 300_000);
            $client = new Client(Transports::make('streams', [$node->url], 1 << 20), ['timeout' => 300, 'trusted_keys' => [$node->nodeKey]]);
            $result = $client->run($job);
            self::assertSame(0, $result->exitCode(), $result->stderr());
            self::assertSame("items 3 total 13\n", $result->stdout());
            self::assertSame('{"files": 2, "totals": {"apple": 5, "fig": 7, "pear": 1}}', $result->file('/work', 'out/summary.json'));
            self::assertSame("item,qty\napple,2\nfig,7\n", $result->file('/work', 'out/b.done.csv'));
            self::assertSame($node->nodeKey, $result->receipt()->nodeKey);
            self::assertSame(hash_file('sha256', python_wasm()), $result->receipt()->moduleSha256);
        } finally {
            $node->stop();
        }
    }
}
