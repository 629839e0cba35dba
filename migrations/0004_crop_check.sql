-- The crop's output check (issue 14): after cutting, the kept part is scanned once more
-- (small faces included). Its verdict and how many faces it found that the first cut had
-- left visible. NULL for images cropped before the check existed.
ALTER TABLE content
    ADD COLUMN output_check text
        CHECK (output_check IS NULL OR output_check IN ('passed', 'moved', 'needs_manual_crop', 'skipped')),
    ADD COLUMN output_check_faces integer CHECK (output_check_faces IS NULL OR output_check_faces >= 0);
