<?php

declare(strict_types=1);

namespace Phase\Sdk\Tests;

use Phase\Sdk\Client;
use Phase\Sdk\Exception\JobException;
use Phase\Sdk\Job;
use PHPUnit\Framework\TestCase;

/** The local transport runs the `phase` binary: same answer, same verification. */
final class LocalTransportTest extends TestCase
{
    public function testLocalRunReturnsAVerifiedResult(): void
    {
        $result = Client::local(phase_bin())->run(Job::fromFile(guest('hello'))->withInput('Hello, World')->withArgs(['a'])->withEnv(['K' => 'V']));
        self::assertSame('dlroW ,olleH', $result->stdout());
        self::assertTrue($result->receipt()->signatureValid());
    }

    public function testLocalTrapIsAJobException(): void
    {
        $this->expectException(JobException::class);
        $this->expectExceptionMessage('memory_limit');
        Client::local(phase_bin())->run(Job::fromFile(guest('hostile-memory'))->withLimits(memoryBytes: 4 << 20));
    }

    public function testALocalKeyInADataDirIsStable(): void
    {
        $dir = sys_get_temp_dir() . '/phase-sdk-key-' . bin2hex(random_bytes(4));
        $a = Client::local(phase_bin(), [], $dir)->run(Job::fromFile(guest('hello')));
        $b = Client::local(phase_bin(), ['trusted_keys' => [$a->receipt()->nodeKey]], $dir)->run(Job::fromFile(guest('hello')));
        self::assertSame($a->receipt()->nodeKey, $b->receipt()->nodeKey);
        array_map('unlink', glob("{$dir}/*"));
        rmdir($dir);
    }

    public function testLocalFilesGoInAndComeBackVerified(): void
    {
        $job = Job::fromFile(guest('files'))->withArgs(['/work'])
            ->withFile('/work', 'in/data.txt', "alpha\nbravo\ncharlie\n")
            ->withFile('/work', 'in/old.txt', 'old')
            ->withFile('/work', 'in/delete-me.txt', 'gone');
        $result = Client::local(phase_bin())->run($job);
        self::assertStringStartsWith("lines: 3\n", $result->stdout());
        self::assertSame("ALPHA\nBRAVO\nCHARLIE\n", $result->file('/work', 'out/result.txt'));
        self::assertSame("first\nsecond\n", $result->file('/work', 'out/log.txt'));
    }

    public function testLocalFileLimitsAreTheJobsAndSigned(): void
    {
        $job = Job::fromFile(guest('files'))->withArgs(['/work'])
            ->withFile('/work', 'in/data.txt', "alpha\nbravo\ncharlie\n")
            ->withFile('/work', 'in/old.txt', 'old')
            ->withFileLimits(bytes: 30, openFiles: 20);
        // The same limits as a node would apply: result.txt does not fit in 30 bytes, the guest
        // panics on the full disk, and the receipt names the limits asked.
        try {
            Client::local(phase_bin())->run($job);
            self::fail('no exception');
        } catch (JobException $e) {
            self::assertSame('unreachable', $e->result->trap());
            self::assertStringContainsString('StorageFull', $e->result->stderr());
            self::assertSame(30, $e->result->receipt()->fileLimits['bytes']);
            self::assertSame(20, $e->result->receipt()->fileLimits['open_files']);
        }
    }
}
