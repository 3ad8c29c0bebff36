-- A full pass walks several updated_at windows at once; each window's
-- progress is kept here so a killed pass resumes every window where it stopped.
CREATE TABLE full_pass_windows (
    full_pass INTEGER NOT NULL,
    window_id INTEGER NOT NULL,
    -- updated_at the window starts from, and where its walk has reached
    cursor    INTEGER NOT NULL,
    -- last updated_at of the window (inclusive); NULL for the open window that
    -- runs to the present and finishes last
    end_at    INTEGER,
    done      INTEGER NOT NULL DEFAULT 0 CHECK (done IN (0, 1)),
    PRIMARY KEY (full_pass, window_id)
);
