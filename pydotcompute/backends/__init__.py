"""Backends that run ring kernels: host (asyncio) and device (CUDA or emulated).

Every backend kernel offers the same surface to :class:`~pydotcompute.RingKernelRuntime`:
``kernel_id``, ``spec``, ``options``, ``state``, ``accepting``, ``input_type``, an ``inbox``
(``put_nowait``, ``put_wait``, ``put_many_nowait``, ``__len__``), an ``outbox``
(``pop_nowait``, ``pop_many``, ``wait``, ``abandon``, ``expect``, ``forget``, ``__len__``), and the
coroutines ``launch``, ``activate``, ``deactivate``, ``terminate``, ``relaunch`` plus
``telemetry()`` and ``launch_result()``.
"""
