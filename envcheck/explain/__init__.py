"""``envcheck explain``: a pasted error (or a failing command's output) read against the known failures
(``signatures``), and the doctor's checks for each one run on this machine (``app``)."""
